"""The backbone factory: any timm model as a pooled-feature encoder ``f``.

``build_backbone("resnet18", in_chans=1, image_size=28)`` returns a module mapping images
``[B, C, H, W]`` to pooled features ``[B, F]`` with ``F = module.num_features``. Weights
come only from a local file: medssl never downloads anything at run time.

Small inputs (<= 64 px) get a CIFAR-style stem on ResNet-family models: a 3x3 stride-1
first convolution and no max-pool, so a 32 px image is not reduced to 8 px before the
first residual stage. Other architectures keep their stem (with a warning), because
their downsampling is spread over several modules that cannot be changed safely in
general (e.g. a ViT's patch size also fixes its position-embedding grid).
"""

from __future__ import annotations

import difflib
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from medssl.errors import ConfigError, RegistryError
from medssl.text import looked_at

#: Inputs at or below this side length (px) get the small-input stem under ``"auto"``.
SMALL_INPUT_MAX_PX = 64

# Wrapper keys under which training scripts commonly nest the state dict, and prefixes
# that wrappers (DDP, SSL models) put in front of the backbone's own keys.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "backbone", "encoder", "net")
_STRIP_PREFIXES = ("module.", "backbone.", "encoder.", "model.")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")

_OFFLINE_HINT = (
    "medssl is offline by design and never downloads weights. Download the file yourself "
    "(e.g. with `huggingface-cli download timm/resnet50.a1_in1k model.safetensors`) and pass "
    "its local path as `weights: /path/to/model.safetensors` (or a .pth/.pt state dict)."
)


@dataclass
class WeightsReport:
    """What :func:`load_backbone_weights` did: keys loaded, missing, unexpected, skipped."""

    path: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatch: List[str] = field(default_factory=list)
    adapted: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        for name, keys in (
            ("missing in file (kept at random init)", self.missing),
            ("unexpected in file (ignored)", self.unexpected),
            ("shape mismatch (kept at random init)", self.shape_mismatch),
            ("input channels adapted", self.adapted),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else "")
                parts.append(f"{name}: {shown}")
        return "; ".join(parts)


def _check_name(name: str) -> None:
    import timm

    # Hub-style names ("hf-hub:timm/x", "timm/x") imply a download.
    if ":" in name or "/" in name:
        raise ConfigError(f"backbone {name!r} names a model hub entry. {_OFFLINE_HINT}")
    base = name.split(".")[0]  # "resnet50.a1_in1k": the tag only selects pretrained weights
    if base != name and timm.is_model(base):
        raise ConfigError(
            f"backbone {name!r} carries a pretrained tag ({name[len(base) + 1:]!r}); use the "
            f"architecture name {base!r} and pass weights as a local file. {_OFFLINE_HINT}"
        )
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name.lower(), timm.list_models(), n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise RegistryError(
        f"unknown timm backbone {name!r}.{hint} See timm.list_models() for all names."
    )


def _small_conv_like(conv: nn.Conv2d) -> nn.Conv2d:
    return nn.Conv2d(
        conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1,
        bias=conv.bias is not None,
    )


def apply_small_input_stem(model: nn.Module) -> bool:
    """Give a ResNet-family model a 3x3 stride-1 first conv and no max-pool, in place.

    Handles the plain stem (``conv1`` a Conv2d) and timm's deep stems (``conv1`` a
    Sequential whose first conv is replaced). Returns ``False``, leaving the model
    unchanged, when the model has no ``conv1``/``maxpool`` pair (not ResNet-like).
    """
    conv1 = getattr(model, "conv1", None)
    if conv1 is None or not hasattr(model, "maxpool") or not isinstance(conv1, (nn.Conv2d, nn.Sequential)):
        return False
    if isinstance(conv1, nn.Conv2d):
        model.conv1 = _small_conv_like(conv1)
    else:
        idx = next((i for i, m in enumerate(conv1) if isinstance(m, nn.Conv2d)), None)
        if idx is None:
            return False
        conv1[idx] = _small_conv_like(conv1[idx])
    model.maxpool = nn.Identity()
    return True


def _unwrap_state_dict(obj: Any, path: Path) -> Dict[str, Tensor]:
    # Descend through wrapper dicts until we hit a flat name -> tensor mapping.
    for _ in range(4):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            key = next((k for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if key is not None:
                obj = obj[key]
                continue
        break
    raise ConfigError(
        f"weights file {path} holds no state dict: expected a mapping of tensor names to "
        f"tensors, optionally under one of the keys {list(_WRAPPER_KEYS)}"
    )


def _strip_prefixes(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    changed = True
    while changed:
        changed = False
        for pre in _STRIP_PREFIXES:
            if sd and all(k.startswith(pre) for k in sd):
                sd = {k[len(pre):]: v for k, v in sd.items()}
                changed = True
    # A full SSL checkpoint holds more than the backbone: keep only the backbone's keys.
    if any(k.startswith("backbone.") for k in sd):
        sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    return sd


def _refused_by_weights_only(exc: BaseException) -> bool:
    """Whether torch's weights-only unpickler refused an object (versus unreadable bytes)."""
    return "Unsupported global" in str(exc)


def read_weights_file(path: Union[str, Path]) -> Dict[str, Tensor]:
    """Read a local ``.safetensors`` / ``.pth`` / ``.pt`` file into a flat state dict.

    Wrappers such as ``{"state_dict": ...}`` or ``{"model": ...}`` are unwrapped and the
    ``module.`` / ``backbone.`` / ``encoder.`` prefixes stripped. ``.pth`` files are read
    with ``torch.load(weights_only=True)`` (no code execution).
    """
    p = Path(path).expanduser()
    if not p.is_file() and p.suffix not in _WEIGHT_SUFFIXES:
        raise ConfigError(
            f"backbone weights {str(path)!r} is not a local file (it looks like a model hub name "
            f"or URL). {_OFFLINE_HINT}"
        )
    if not p.is_file():
        raise ConfigError(
            f"backbone weights file {str(p)!r} does not exist (looked at {looked_at(p)}). Pass the path of a "
            f"local .safetensors or .pth file. {_OFFLINE_HINT}"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(p), device="cpu")
        else:
            raw = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _refused_by_weights_only(exc):  # garbage bytes also fail as an UnpicklingError
            raise ConfigError(
                f"cannot read backbone weights file {p}: not a torch or safetensors file (unreadable pickle data)"
            ) from exc
        # torch's own text suggests weights_only=False, which medssl does not offer
        raise ConfigError(
            f"refused to load backbone weights file {p}: it contains pickled Python objects that are "
            "not plain tensors or containers, and loading it would run code from the file. Use a "
            ".safetensors file, or re-save a plain state_dict if you trust the file."
        ) from exc
    except Exception as exc:  # corrupt file, truncated archive, ...
        detail = " ".join(str(exc).split())  # one line for the CLI
        raise ConfigError(f"cannot read backbone weights file {p}: {detail}") from exc
    return _strip_prefixes(_unwrap_state_dict(raw, p))


def load_backbone_weights(model: nn.Module, path: Union[str, Path], strict: bool = False) -> WeightsReport:
    """Load a local weights file into ``model`` (classifier keys ignored), return a report.

    Tensors whose shape differs from the model's are skipped, except a first conv whose
    input channels differ (3 -> 1 channel), which timm's ``adapt_input_conv`` converts.
    Anything not loaded is listed in a warning; ``strict=True`` makes it a ConfigError,
    except the first conv of a small-input stem (:func:`build_backbone` replaced it, so
    ImageNet weights cannot fit it).
    """
    from timm.models import adapt_input_conv

    sd = read_weights_file(path)
    report = WeightsReport(path=str(path))
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifier = cfg.get("classifier")
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    own = model.state_dict()
    to_load: Dict[str, Tensor] = {}
    for k, v in sd.items():
        if any(k == h or k.startswith(h + ".") for h in heads) and k not in own:
            continue  # the ImageNet classifier; the backbone was built with num_classes=0
        if k not in own:
            report.unexpected.append(k)
            continue
        target = own[k]
        if v.shape != target.shape:
            if v.ndim == 4 and target.ndim == 4 and v.shape[0] == target.shape[0] and v.shape[2:] == target.shape[2:]:
                to_load[k] = adapt_input_conv(target.shape[1], v.float()).to(target.dtype)
                report.adapted.append(k)
                continue
            report.shape_mismatch.append(f"{k} {tuple(v.shape)}->{tuple(target.shape)}")
            continue
        to_load[k] = v
    report.missing = [k for k in own if k not in to_load]
    report.loaded = sorted(to_load)
    replaced = {"conv1.weight"} if getattr(model, "small_input_stem_applied", False) else set()
    mismatched = [m for m in report.shape_mismatch if m.split(" ")[0] not in replaced]
    if strict and (report.missing or report.unexpected or mismatched):
        raise ConfigError(f"backbone weights do not match the model: {report.summary()}")
    model.load_state_dict(to_load, strict=False)
    if not report.ok or report.adapted:
        warnings.warn(f"backbone weights: {report.summary()}", stacklevel=2)
    return report


def _resolve_small_stem(flag: Union[bool, str], image_size: Optional[int]) -> bool:
    if isinstance(flag, str):
        if flag.lower() != "auto":
            raise ConfigError(f"small_input_stem must be true, false or 'auto'; got {flag!r}")
        return image_size is not None and image_size <= SMALL_INPUT_MAX_PX
    if not isinstance(flag, bool):
        raise ConfigError(f"small_input_stem must be true, false or 'auto'; got {flag!r}")
    return flag


def build_backbone(
    name: str,
    in_chans: int = 3,
    image_size: Optional[int] = None,
    small_input_stem: Union[bool, str] = "auto",
    weights: Optional[str] = None,
    strict_weights: bool = False,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm model ``name`` as an encoder ``[B, in_chans, H, W] -> [B, num_features]``.

    Args:
        name: any ``timm.list_models()`` architecture name (no pretrained tag).
        in_chans: image channels (1 for grey-scale MedMNIST, 3 for RGB).
        image_size: training image side (px); selects the small stem under ``"auto"`` and
            sets ``img_size`` for fixed-input-size models (ViTs).
        small_input_stem: ``True`` / ``False`` / ``"auto"`` (= ``image_size <= 64``).
        weights: a local ``.safetensors`` / ``.pth`` / ``.pt`` file, loaded after the stem
            change (so a medssl-exported small-stem encoder loads exactly).
        strict_weights: raise instead of warn when weights leave keys unloaded.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    import timm

    if timm_kwargs.pop("pretrained", False):
        raise ConfigError(f"pretrained=True is not supported for backbone {name!r}. {_OFFLINE_HINT}")
    for bad in ("pretrained_cfg_overlay", "checkpoint_path"):
        if bad in timm_kwargs:
            raise ConfigError(f"backbone option {bad!r} is not supported; use `weights:` instead. {_OFFLINE_HINT}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone name must be a timm model name; got {name!r}")
    if int(in_chans) < 1:
        raise ConfigError(f"in_chans must be >= 1; got {in_chans}")
    small = _resolve_small_stem(small_input_stem, image_size)
    _check_name(name)
    # A backbone that cannot take the image size fails here, before any data is read or
    # file written, rather than as a traceback at the first training step.
    try:
        model = _create(name, int(in_chans), image_size, small, timm_kwargs)
        problem = _dry_forward(model, int(in_chans), image_size) if image_size is not None else None
    except ConfigError:
        raise
    except (AssertionError, RuntimeError, ValueError) as exc:  # a size baked in at creation (ViT)
        if image_size is None:
            raise
        problem = _one_line(exc)
    if problem is not None:
        raise ConfigError(_size_error(name, int(in_chans), int(image_size), small_input_stem, timm_kwargs, problem))
    if small and not model.small_input_stem_applied:
        warnings.warn(
            f"small_input_stem: backbone {name!r} is not ResNet-like (no conv1/maxpool); its stem "
            f"is left unchanged, so small images (image_size={image_size}) are downsampled early.",
            stacklevel=2,
        )
    if weights is not None:
        load_backbone_weights(model, weights, strict=strict_weights)
    return model


def _create(name: str, in_chans: int, image_size: Optional[int], small: bool,
            timm_kwargs: Dict[str, Any]) -> nn.Module:
    """The timm model (built for ``image_size`` if its input size is fixed), small stem applied
    when ``small`` and possible; ``model.small_input_stem_applied`` says whether it was."""
    import timm

    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **timm_kwargs)
        fixed = bool((getattr(model, "pretrained_cfg", {}) or {}).get("fixed_input_size"))
        if fixed and image_size is not None and "img_size" not in timm_kwargs:
            # ViT-style models bake the input size into their position embeddings.
            model = timm.create_model(
                name, pretrained=False, num_classes=0, in_chans=in_chans, img_size=int(image_size), **timm_kwargs
            )
    except TypeError as exc:
        raise ConfigError(f"bad option for timm backbone {name!r}: {exc}") from exc
    # Recorded so an exported encoder says exactly which stem its weights belong to.
    model.small_input_stem_applied = bool(small) and apply_small_input_stem(model)
    return model


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + " ..."


def _dry_forward(model: nn.Module, in_chans: int, image_size: int) -> Optional[str]:
    """``None`` if ``model`` maps one zero image ``[1, in_chans, S, S]`` to features, else why
    not (one line). Runs in eval mode without gradients: no weight, statistic or RNG changes."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, image_size, image_size))
    except (AssertionError, RuntimeError, ValueError, IndexError) as exc:
        return _one_line(exc)
    finally:
        model.train(was_training)
    return None


#: Image sizes tried, smallest first, to tell the user which sizes a backbone does take.
PROBE_SIZES = (16, 28, 32, 48, 64, 96, 128, 160, 224, 256, 299, 384)
_PROBE_SECONDS = 20.0  # a large model is slow to build: name what was found in time


def working_sizes(name: str, in_chans: int = 3, small_input_stem: Union[bool, str] = "auto",
                  timm_kwargs: Optional[Dict[str, Any]] = None, limit: int = 3) -> List[int]:
    """Up to ``limit`` sizes of :data:`PROBE_SIZES` at which ``name`` builds and runs a dry
    forward (smallest first); stops early after ~20 s of trying."""
    import time

    found: List[int] = []
    start = time.monotonic()
    for size in PROBE_SIZES:
        if len(found) >= limit or time.monotonic() - start > _PROBE_SECONDS:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = _create(name, in_chans, size, _resolve_small_stem(small_input_stem, size),
                                dict(timm_kwargs or {}))
            except ConfigError:
                raise
            except (AssertionError, RuntimeError, ValueError):
                continue
        if _dry_forward(model, in_chans, size) is None:
            found.append(size)
    return found


def _size_error(name: str, in_chans: int, image_size: int, small_input_stem: Union[bool, str],
                timm_kwargs: Dict[str, Any], problem: str) -> str:
    sizes = working_sizes(name, in_chans, small_input_stem, timm_kwargs)
    tried = f"tried {PROBE_SIZES[0]}-{PROBE_SIZES[-1]} px"
    works = (f"it does work at {', '.join(map(str, sizes))} px ({tried}); set augment.image_size to one of those"
             if sizes else f"no size worked ({tried}); choose another backbone")
    return f"backbone {name!r} cannot take {image_size} px images ({problem}); {works}"
