"""Exported encoders: ``encoder.safetensors`` + ``encoder.json``, and loading them back.

The safetensors file holds the backbone's state dict with timm's own key names (so
``timm.create_model(name, num_classes=0, pretrained=True,
pretrained_cfg_overlay=dict(file=...))`` loads it when no small-input stem was used);
the JSON beside it records what is needed to rebuild and feed the encoder: backbone
name, stem, input size, channels and normalisation. Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from medssl.errors import ConfigError, MedSSLError
from medssl.fileio import PathLike
from medssl.text import no_such_file

FORMAT = "medssl-encoder-v1"


def export_encoder(
    encoder: nn.Module,
    path: PathLike,
    *,
    backbone: str,
    in_chans: int,
    image_size: int,
    small_input_stem: Union[bool, str],
    mean: Sequence[float],
    std: Sequence[float],
    extra: Optional[Dict[str, Any]] = None,
    advice: Optional[str] = None,
) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar atomically; returns ``path``.
    A failed write (a full disk) is a one-line :class:`~medssl.errors.WriteError` ending in
    ``advice`` (what the caller can do about it).

    Raises:
        MedSSLError: a weight or buffer holds NaN or infinity (a diverged run); nothing is
            written, so no one evaluates an encoder whose every output is NaN.
    """
    from safetensors.torch import save_file

    from medssl.fileio import atomic_write

    target = Path(path)
    applied = getattr(encoder, "small_input_stem_applied", None)
    meta: Dict[str, Any] = {
        "format": FORMAT,
        "backbone": backbone,
        "in_chans": int(in_chans),
        "image_size": int(image_size),
        "small_input_stem": bool(applied) if applied is not None else small_input_stem,
        "num_features": int(getattr(encoder, "num_features", 0)),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
        raise MedSSLError(
            f"refused to export {target}: {len(bad)} of {len(state)} encoder tensors hold NaN or "
            f"infinity ({shown}); training diverged. Lower optim.lr, set optim.grad_clip, or resume "
            "from an earlier checkpoint"
        )
    atomic_write(target, lambda tmp: save_file(state, str(tmp), metadata={"medssl": json.dumps(meta)}),
                 "the encoder", advice)
    atomic_write(target.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)),
                 "the encoder record", advice)
    return target


# What load_encoder needs to rebuild and feed the encoder; all are in the weights file's header.
REQUIRED_KEYS = ("format", "backbone", "in_chans", "image_size", "small_input_stem", "mean", "std")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def check_metadata(meta: Any, where: str) -> Dict[str, Any]:
    """``meta`` if it is a medssl encoder record (a JSON object with :data:`REQUIRED_KEYS`
    of the right types), else a ConfigError naming ``where`` and the key."""
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)}, "
                          f"got a JSON {type(meta).__name__}; export the encoder again")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}; export the encoder again")
    if meta["format"] != FORMAT:
        raise ConfigError(f"{where}: unsupported encoder format {meta['format']!r} (this medssl reads {FORMAT!r})")
    bad = []
    if not isinstance(meta["backbone"], str) or not meta["backbone"]:
        bad.append(f"backbone={meta['backbone']!r} (a timm model name)")
    for key in ("in_chans", "image_size"):
        if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 1:
            bad.append(f"{key}={meta[key]!r} (a positive integer)")
    if not isinstance(meta["small_input_stem"], (bool, str)):
        bad.append(f"small_input_stem={meta['small_input_stem']!r} (true, false or 'auto')")
    for key in ("mean", "std"):
        v = meta[key]
        if not (isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            bad.append(f"{key}={v!r} (a list of numbers, one per channel)")
    if bad:
        raise ConfigError(f"{where}: invalid {'; '.join(bad)}; export the encoder again")
    return meta


def _embedded_metadata(p: Path) -> Optional[Dict[str, Any]]:
    """The record in the safetensors header (written by :func:`export_encoder`), or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("medssl")
    except Exception as exc:  # SafetensorError, OSError: truncated, not safetensors, unreadable
        raise ConfigError(f"cannot read backbone weights file {p}: {_one_line(exc)}") from exc
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{p}: the medssl record in its header is not valid JSON ({_one_line(exc)})") from exc
    return check_metadata(meta, f"{p} (header)")


def _sidecar_metadata(sidecar: Path) -> Dict[str, Any]:
    try:
        text = sidecar.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{sidecar}: not UTF-8 text (byte {exc.start}); it is not an encoder.json written by "
                          f"medssl. Delete it (the .safetensors file carries the same record) or export again") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {sidecar}: {_one_line(exc)}") from exc
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{sidecar}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
                          "Delete it (the .safetensors file carries the same record) or export again") from exc
    return check_metadata(meta, str(sidecar))


def _resolve(path: PathLike) -> Tuple[Path, Dict[str, Any]]:
    """The weights file behind ``path`` and its metadata.

    The record inside the safetensors header is authoritative (it travels with the
    weights); the ``.json`` sidecar is a readable copy that must agree with it on every
    key both hold. Without a header record (a foreign safetensors file) the sidecar alone
    describes the encoder.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "encoder.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise ConfigError(
            no_such_file("encoder file", p, "pass a run directory holding encoder.safetensors, "
                         "or the .safetensors file itself")
        )
    sidecar = p.with_suffix(".json")
    embedded = _embedded_metadata(p)
    if not sidecar.is_file():
        if embedded is None:
            raise ConfigError(f"{p} has no medssl metadata and no {sidecar.name} beside it")
        return p, embedded
    side = _sidecar_metadata(sidecar)
    if embedded is None:
        return p, side
    differ = [f"{k}: {side[k]!r} in {sidecar.name} vs {embedded[k]!r} in {p.name}"
              for k in sorted(set(side) & set(embedded)) if side[k] != embedded[k]]
    if differ:
        raise ConfigError(
            f"{sidecar} disagrees with the metadata stored inside {p} ({'; '.join(differ)}): the JSON was edited "
            f"or belongs to another encoder. Delete {sidecar.name} to use the record in the weights file, "
            "or export the encoder again"
        )
    return p, embedded


def load_encoder(path: PathLike, device: Union[str, torch.device] = "cpu"
                 ) -> Tuple[nn.Module, Callable[[Any], torch.Tensor]]:
    """An exported encoder in eval mode, and its ``preprocess``.

    ``preprocess`` takes one HWC uint8 image (numpy, as medssl datasets return), a batch
    ``(N, H, W(, C))`` or a list of images and returns a float tensor ``[C, S, S]`` /
    ``[N, C, S, S]`` resized to the training size and normalised as in training; grayscale
    inputs are repeated to 3 channels when the encoder expects 3, RGBA loses its alpha, and
    a channel-first or ambiguous layout is a ConfigError naming the shapes accepted
    (:mod:`medssl.augment.layout`). ``device`` "cuda" without a GPU is a ConfigError.
    """
    from medssl.augment.layout import image_list, one_image
    from medssl.augment.presets import eval_preprocess
    from medssl.device import resolve_device
    from medssl.models.backbone import build_backbone

    if not isinstance(device, torch.device):
        device = resolve_device(device, "load_encoder(device=...)")
    elif device.type == "cuda" and not torch.cuda.is_available():
        device = resolve_device(str(device), "load_encoder(device=...)")
    p, meta = _resolve(path)
    model = build_backbone(meta["backbone"], in_chans=meta["in_chans"], image_size=meta["image_size"],
                           small_input_stem=meta["small_input_stem"], weights=str(p), strict_weights=True)
    model = model.to(device).eval()
    aug = eval_preprocess(meta["mean"], meta["std"], meta["in_chans"], meta["image_size"])

    def preprocess(images: Any) -> torch.Tensor:
        if isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and (
                images.shape[-1] in (1, 3, 4) or images.shape[0] in (1, 3, 4)))):
            return aug(one_image(images, "preprocess(images)"))
        batch = image_list(images, "preprocess(images)")
        if not batch:
            return torch.empty(0, meta["in_chans"], meta["image_size"], meta["image_size"])
        return torch.stack([aug(im) for im in batch])

    preprocess.meta = meta  # type: ignore[attr-defined]
    return model, preprocess
