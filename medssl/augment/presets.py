"""Augmentation presets: typed parameter sets selectable by name.

A preset is a frozen dataclass of parameters (``HistoParams``, ``NaturalParams``,
``GrayParams``, ``EvalParams``) registered in :data:`medssl.registry.AUGMENTATIONS`;
its :meth:`plan` lowers it to one :class:`~medssl.augment.plan.AugmentPlan`, which both the per-image CPU
path (:mod:`medssl.augment.pipeline`) and the batched on-device path
(:mod:`medssl.augment.gpu`) execute, so the two cannot drift apart.

>>> aug = build_augmentation("histo", 96, hed_theta="strong", pcam_safe=True)
>>> view = aug(image, np.random.default_rng(0))   # float32 tensor (3, 96, 96)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional, Sequence, Tuple, Union

from medssl.augment.pipeline import Augment
from medssl.augment.plan import IMAGENET_MEAN, IMAGENET_STD, AugmentPlan, Pair
from medssl.config import check_range
from medssl.errors import ConfigError
from medssl.registry import AUGMENTATIONS

HED_STRENGTHS = {"light": 0.05, "strong": 0.2}
PCAM_CENTER = 32  # PCAM labels a 96x96 tile by its central 32x32 region

# ----------------------------------------------------------------------------- validation


def _fail(preset: str, key: str, why: str, value: Any) -> ConfigError:
    return ConfigError(f"{_label(preset, key)} {why}, got {value!r}")


def _label(preset: str, key: str) -> str:
    return f"augmentation {preset!r}: parameter {key!r}"


def _number(preset: str, key: str, v: Any, lo: float, hi: float) -> float:
    return check_range(_label(preset, key), v, lo=lo, hi=hi)


def _pair(preset: str, key: str, v: Any, lo: float, hi: float) -> Pair:
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != 2:
        raise _fail(preset, key, "must be a pair [low, high]", v)
    a, b = (_number(preset, key, x, lo, hi) for x in v)
    if a > b:
        raise _fail(preset, key, "must have low <= high", v)
    return (a, b)


def _stats(preset: str, key: str, v: Any, positive: bool) -> Tuple[float, ...]:
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) not in (1, 3):
        raise _fail(preset, key, "must be a list of 1 or 3 numbers", v)
    out = tuple(_number(preset, key, x, -1e6, 1e6) for x in v)
    if positive and min(out) <= 0:
        raise _fail(preset, key, "must be positive", v)
    return out


def _flag(preset: str, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _fail(preset, key, "must be true or false", v)
    return v


def _int(preset: str, key: str, v: Any, lo: int, hi: int) -> int:
    return check_range(_label(preset, key), v, lo=lo, hi=hi, integer=True)


def _channels(preset: str, key: str, v: Any, allow_none: bool) -> Optional[int]:
    if v is None and allow_none:
        return None
    if v not in (1, 3) or isinstance(v, bool):
        raise _fail(preset, key, "must be 1 or 3" + (" or null" if allow_none else ""), v)
    return int(v)


def _check_field(preset: str, key: str, v: Any) -> Any:
    """Validate one value by the naming conventions shared by all presets."""
    if key.endswith("_p"):
        return _number(preset, key, v, 0.0, 1.0)
    if key in ("brightness", "contrast", "saturation"):
        return _number(preset, key, v, 0.0, 1.0)
    if key == "hue":
        return _number(preset, key, v, 0.0, 0.5)
    if key == "gamma":
        return _number(preset, key, v, 0.0, 0.9)
    if key == "scale":
        v = _pair(preset, key, v, 0.0, 1.0)
        if v[0] <= 0:
            raise _fail(preset, key, "must have low > 0", v)
        return v
    if key == "ratio":
        v = _pair(preset, key, v, 1e-3, 1e3)
        return v
    if key == "blur_sigma":
        v = _pair(preset, key, v, 0.0, 20.0)
        if v[0] <= 0:
            raise _fail(preset, key, "must have low > 0", v)
        return v
    if key == "hed_theta":
        if isinstance(v, str):
            if v not in HED_STRENGTHS:
                raise _fail(preset, key, f"must be a number in [0, 0.9] or one of {sorted(HED_STRENGTHS)}", v)
            return HED_STRENGTHS[v]
        return _number(preset, key, v, 0.0, 0.9)
    if key == "rotate_degrees":
        return _number(preset, key, v, 0.0, 180.0)
    if key == "crop_fraction":
        v = _number(preset, key, v, 0.0, 1.0)
        if v <= 0:
            raise _fail(preset, key, "must be > 0", v)
        return v
    if key in ("keep_center", "blur_min_size"):
        return _int(preset, key, v, 0, 1 << 16)
    if key in ("d4", "pcam_safe", "stain_normalize"):
        return _flag(preset, key, v)
    if key == "mean":
        return None if v is None else _stats(preset, key, v, positive=False)
    if key == "std":
        return None if v is None else _stats(preset, key, v, positive=True)
    if key == "out_channels":
        return _channels(preset, key, v, allow_none=True)
    raise AssertionError(f"no validator for {key}")  # pragma: no cover - programming error


@dataclass(frozen=True)
class PresetParams:
    """Base of every preset's parameters: validation and normalisation statistics."""

    preset: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check_field(self.preset, f.name, getattr(self, f.name)))

    def plan(self) -> AugmentPlan:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class HistoParams(PresetParams):
    """H&E patches (PCAM, PathMNIST): crop, full D4, HED stain jitter, light colour jitter.

    No solarize (no tissue looks like that) and grayscale off (colour carries the stain).
    """

    preset: ClassVar[str] = "histo"
    scale: Pair = (0.3, 1.0)
    ratio: Pair = (3 / 4, 4 / 3)
    pcam_safe: bool = False
    keep_center: int = 0
    d4: bool = True
    hed_theta: Union[float, str] = 0.05
    hed_p: float = 1.0
    jitter_p: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05
    grayscale_p: float = 0.0
    blur_p: float = 0.5
    blur_sigma: Pair = (0.1, 2.0)
    blur_min_size: int = 64
    stain_normalize: bool = False
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None

    def plan(self) -> AugmentPlan:
        return AugmentPlan(
            mode="random", work_channels=3, out_channels=3, mean=self.mean, std=self.std,
            stain_normalize=self.stain_normalize, scale=self.scale, ratio=self.ratio,
            keep_center=max(self.keep_center, PCAM_CENTER if self.pcam_safe else 0),
            d4=self.d4, hed_theta=float(self.hed_theta), hed_p=self.hed_p, jitter_p=self.jitter_p,
            brightness=self.brightness, contrast=self.contrast, saturation=self.saturation, hue=self.hue,
            grayscale_p=self.grayscale_p, blur_p=self.blur_p, blur_sigma=self.blur_sigma,
            blur_min_size=self.blur_min_size,
        )  # fmt: skip


@dataclass(frozen=True)
class NaturalParams(PresetParams):
    """The SimCLR recipe for natural images (STL-10 as a source domain)."""

    preset: ClassVar[str] = "natural"
    scale: Pair = (0.08, 1.0)
    ratio: Pair = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: Pair = (0.1, 2.0)
    blur_min_size: int = 64
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None

    def plan(self) -> AugmentPlan:
        return AugmentPlan(
            mode="random", work_channels=3, out_channels=3, mean=self.mean, std=self.std, scale=self.scale,
            ratio=self.ratio, hflip_p=self.hflip_p, jitter_p=self.jitter_p, brightness=self.brightness,
            contrast=self.contrast, saturation=self.saturation, hue=self.hue, grayscale_p=self.grayscale_p,
            blur_p=self.blur_p, blur_sigma=self.blur_sigma, blur_min_size=self.blur_min_size,
        )  # fmt: skip


@dataclass(frozen=True)
class GrayParams(PresetParams):
    """X-ray / ultrasound: crop, small rotations, brightness/contrast; no colour ops and no
    vertical flip (a chest has an up and a down). ``out_channels`` 3 repeats the gray
    channel for encoders pretrained on RGB."""

    preset: ClassVar[str] = "gray"
    scale: Pair = (0.5, 1.0)
    ratio: Pair = (3 / 4, 4 / 3)
    keep_center: int = 0
    rotate_degrees: float = 10.0
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    gamma_p: float = 0.0
    gamma: float = 0.0
    blur_p: float = 0.0
    blur_sigma: Pair = (0.1, 1.0)
    blur_min_size: int = 64
    out_channels: Optional[int] = 3
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.out_channels is None:
            raise _fail(self.preset, "out_channels", "must be 1 or 3", None)

    def plan(self) -> AugmentPlan:
        return AugmentPlan(
            mode="random", work_channels=1, out_channels=self.out_channels, mean=self.mean, std=self.std,
            scale=self.scale, ratio=self.ratio, keep_center=self.keep_center,
            rotate_degrees=self.rotate_degrees, hflip_p=self.hflip_p, jitter_p=self.jitter_p,
            brightness=self.brightness, contrast=self.contrast, blur_p=self.blur_p,
            blur_sigma=self.blur_sigma, blur_min_size=self.blur_min_size, gamma_p=self.gamma_p, gamma=self.gamma,
        )  # fmt: skip


@dataclass(frozen=True)
class RadiologyParams(GrayParams):
    """CT / MR / X-ray after a window (the ``dicom`` and ``nifti`` data sets): the gray
    preset plus a random gamma (``x ** g``, ``g ~ U(0.7, 1.3)``, half the views). On a
    windowed image brightness and contrast jitter move the window's center and width
    within the displayed range; gamma bends the curve without creating values a scanner
    cannot produce. No colour operation, no vertical flip."""

    preset: ClassVar[str] = "radiology"
    gamma_p: float = 0.5
    gamma: float = 0.3


@dataclass(frozen=True)
class EvalParams(PresetParams):
    """Deterministic: centred square crop of ``crop_fraction`` of the short side, resize,
    normalise. A centred crop always keeps PCAM's labelled centre."""

    preset: ClassVar[str] = "eval"
    crop_fraction: float = 1.0
    out_channels: Optional[int] = None
    stain_normalize: bool = False
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None

    def plan(self) -> AugmentPlan:
        return AugmentPlan(
            mode="eval", work_channels=self.out_channels, out_channels=self.out_channels,
            mean=self.mean, std=self.std, stain_normalize=self.stain_normalize, crop_fraction=self.crop_fraction,
        )  # fmt: skip


for _cls in (HistoParams, NaturalParams, GrayParams, RadiologyParams, EvalParams):
    # The registry checks a mapping's keys against the dataclass fields before building.
    AUGMENTATIONS.register(_cls.preset)(_cls)


def resolve_params(name_or_cfg: Union[str, Mapping[str, Any], PresetParams], **overrides: Any) -> PresetParams:
    """Preset name, ``{name: ..., **params}`` mapping or a params object (+ overrides) ->
    validated params."""
    if isinstance(name_or_cfg, PresetParams):
        return dataclasses.replace(name_or_cfg, **overrides) if overrides else name_or_cfg
    name, params = AUGMENTATIONS.split(name_or_cfg, "augmentation")
    params.update(overrides)
    return AUGMENTATIONS.build({"name": name, **params})


def build_augmentation(
    name_or_cfg: Union[str, Mapping[str, Any], PresetParams], image_size: int, **overrides: Any
):
    """A callable ``(image HWC uint8, rng) -> float32 tensor (C, image_size, image_size)``.

    ``name_or_cfg``: "histo" | "natural" | "gray" | "radiology" | "eval", or a mapping with ``name``
    and parameter overrides; ``overrides`` win over the mapping. See docs/augmentation.md.
    """
    params = resolve_params(name_or_cfg, **overrides)
    return Augment(params.plan(), image_size, name=params.preset)


def eval_preprocess(mean: Sequence[float], std: Sequence[float], channels: int, image_size: int) -> Augment:
    """The deterministic evaluation preprocessing of an encoder trained on ``channels``-channel
    images of ``image_size`` px normalised with ``mean`` / ``std``: centred square resize,
    then the same normalisation. The training monitor and :func:`medssl.load_encoder` both
    use it, so what an exported encoder is fed is what it was monitored on."""
    return build_augmentation(EvalParams(mean=tuple(mean), std=tuple(std), out_channels=channels), image_size)


__all__ = [
    "AugmentPlan", "PresetParams", "HistoParams", "NaturalParams", "GrayParams", "EvalParams",
    "IMAGENET_MEAN", "IMAGENET_STD", "PCAM_CENTER", "build_augmentation", "resolve_params", "eval_preprocess",
]  # fmt: skip
