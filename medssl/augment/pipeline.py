"""The per-image (CPU, DataLoader-worker) executor of an :class:`AugmentPlan`.

``Augment(plan, image_size)(image, rng)`` takes an ``(H, W, C)`` uint8 image (C = 1 or
3; a 2-D array is taken as gray) and returns a float32 tensor ``(C', S, S)``,
normalised with the plan's mean/std. Geometry runs on uint8 (cheap, and exact for the
D4 group); photometric ops run on float32 in [0, 1] so that stain and colour jitter do
not quantise twice.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from medssl.augment import colour, geometry, hed
from medssl.augment.plan import AugmentPlan
from medssl.errors import ConfigError, DataError

RngLike = Union[np.random.Generator, torch.Generator, int, None]


def as_numpy_rng(rng: RngLike) -> np.random.Generator:
    """A numpy Generator from a Generator, a torch.Generator (one draw from it), a seed, or
    None (fresh OS entropy: not reproducible)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, torch.Generator, int or None, got {type(rng).__name__}")


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate the dataset contract (HWC uint8, C in {1, 3}); 2-D arrays gain a channel axis."""
    if not isinstance(image, np.ndarray):
        raise DataError(f"augmentation expects a numpy image (H, W, C) uint8, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise DataError(f"augmentation expects an image of shape (H, W, 1|3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise DataError(f"augmentation expects a uint8 image (0..255), got dtype {image.dtype}")
    return image


class Augment:
    """Callable ``(image HWC uint8, rng) -> float32 tensor (C, image_size, image_size)``."""

    def __init__(self, plan: AugmentPlan, image_size: int, name: str = "") -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
            raise ConfigError(f"augmentation image_size must be an integer >= 8, got {image_size!r}")
        self.plan = plan
        self.image_size = int(image_size)
        self.name = name
        if plan.out_channels is not None:
            plan.normalisation(plan.out_channels)  # fail at build time on mismatched mean/std
        self._stain_norm = None
        if plan.stain_normalize:
            from medssl.augment.stain_norm import MacenkoNormalizer

            self._stain_norm = MacenkoNormalizer()
        self._blur_radius = colour.blur_radius(plan.blur_sigma[1])

    def __repr__(self) -> str:
        return f"Augment({self.name or self.plan.mode!r}, image_size={self.image_size})"

    def __call__(self, image: np.ndarray, rng: RngLike = None) -> torch.Tensor:
        p = self.plan
        gen = as_numpy_rng(rng)
        img = check_image(image)
        if self._stain_norm is not None and img.shape[-1] == 3:
            img = self._stain_norm(img)
        if p.work_channels == 3 and p.hed_theta > 0 and img.shape[-1] != 3:
            raise DataError(
                f"augmentation {self.name!r} stains-jitters H&E colour and needs RGB images, got shape "
                f"{img.shape}; use the 'gray' preset for 1-channel data"
            )
        if p.work_channels is not None:
            img = colour.adapt_channels(img, p.work_channels)

        img = self._geometry(img, gen)
        x = img.astype(np.float32) * np.float32(1.0 / 255.0)
        x = self._photometric(x, gen)

        out_c = p.out_channels or x.shape[-1]
        x = colour.adapt_channels(x, out_c)
        mean, std = p.normalisation(out_c)
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def _geometry(self, img: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        p, size = self.plan, self.image_size
        if p.mode == "eval":
            return geometry.centre_crop_resize(img, size, p.crop_fraction)
        h, w = img.shape[:2]
        box = geometry.sample_resized_crop(gen, h, w, p.scale, p.ratio, keep_center=p.keep_center)
        img = geometry.crop_resize(img, box, size)
        if p.d4:
            img = geometry.random_d4(img, gen)
        if p.hflip_p > 0 and gen.random() < p.hflip_p:
            img = np.ascontiguousarray(img[:, ::-1])
        if p.vflip_p > 0 and gen.random() < p.vflip_p:
            img = np.ascontiguousarray(img[::-1])
        if p.rotate_degrees > 0:
            img = geometry.rotate(img, float(gen.uniform(-p.rotate_degrees, p.rotate_degrees)))
        return img

    def _photometric(self, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        p = self.plan
        if p.mode == "eval":
            return x
        if p.hed_theta > 0 and x.shape[-1] == 3 and gen.random() < p.hed_p:
            a, b = hed.sample_hed_params(gen, p.hed_theta)
            x = hed.apply_hed_jitter(x, a, b)
        if p.jitter_p > 0 and gen.random() < p.jitter_p:
            factors = colour.jitter_factors(gen, p.brightness, p.contrast, p.saturation, p.hue)
            x = colour.colour_jitter(x, *factors)
        if p.grayscale_p > 0 and x.shape[-1] == 3 and gen.random() < p.grayscale_p:
            x = colour.to_gray3(x)
        if p.gamma_p > 0 and gen.random() < p.gamma_p:  # no draw at all when off: other presets' streams unchanged
            x = np.power(np.clip(x, 0.0, 1.0), np.float32(gen.uniform(1.0 - p.gamma, 1.0 + p.gamma)))
        if p.blur_active(self.image_size) and gen.random() < p.blur_p:
            sigma = float(gen.uniform(*p.blur_sigma))
            x = colour.gaussian_blur(x, sigma, self._blur_radius)
        return x
