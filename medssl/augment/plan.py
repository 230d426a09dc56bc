"""The lowered form of an augmentation preset: every operation with its parameters.

Both executors run an :class:`AugmentPlan`: the per-image CPU path
(:mod:`medssl.augment.pipeline`) and the batched on-device path (:mod:`medssl.augment.gpu`),
so the two cannot drift apart. Presets (:mod:`medssl.augment.presets`) build plans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from medssl.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Pair = Tuple[float, float]


@dataclass(frozen=True)
class AugmentPlan:
    """Every operation with its resolved parameters, in execution order.

    ``mode`` is "random" (training views) or "eval" (deterministic). Probabilities are
    per call; ranges are inclusive ``(low, high)``.
    """

    mode: str
    work_channels: Optional[int]  # channels the ops run on (None = as the input)
    out_channels: Optional[int]  # channels of the output (None = as work_channels)
    mean: Optional[Tuple[float, ...]]  # None = ImageNet (its channel average for 1 channel)
    std: Optional[Tuple[float, ...]]
    stain_normalize: bool = False
    scale: Pair = (1.0, 1.0)
    ratio: Pair = (1.0, 1.0)
    keep_center: int = 0
    crop_fraction: float = 1.0
    d4: bool = False
    hflip_p: float = 0.0
    vflip_p: float = 0.0
    rotate_degrees: float = 0.0
    hed_theta: float = 0.0
    hed_p: float = 0.0
    jitter_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    grayscale_p: float = 0.0
    gamma_p: float = 0.0  # x ** g with g ~ U(1 - gamma, 1 + gamma): intensity-safe for gray modalities
    gamma: float = 0.0
    blur_p: float = 0.0
    blur_sigma: Pair = (0.1, 2.0)
    blur_min_size: int = 64

    def blur_active(self, image_size: int) -> bool:
        """Blur runs only when enabled and the output is at least ``blur_min_size`` px:
        at 28 px a sigma-2 blur erases the texture that carries the label."""
        return self.blur_p > 0 and image_size >= self.blur_min_size

    def normalisation(self, channels: int) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """Mean and std for an output with ``channels`` channels (length-1 values broadcast)."""
        if channels == 1:
            default_mean, default_std = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        else:
            default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
        mean, std = self.mean or default_mean, self.std or default_std
        mean = mean * channels if len(mean) == 1 else mean
        std = std * channels if len(std) == 1 else std
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(
                f"augmentation mean/std have {len(mean)}/{len(std)} values but the output has "
                f"{channels} channel(s); give 1 or {channels} values"
            )
        return mean, std
