"""Photometric operations on HWC float32 images in [0, 1]: colour jitter, grayscale, blur,
channel adaptation. Colour jitter uses albumentations' torchvision-compatible functionals.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np
from albumentations.augmentations.pixel import functional as AF

# ITU-R 601 luma weights, as used by torchvision / PIL / OpenCV for RGB -> gray.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def jitter_factors(
    rng: np.random.Generator, brightness: float, contrast: float, saturation: float, hue: float
) -> Tuple[float, float, float, float]:
    """torchvision-style factors: b, c, s ~ U(1-x, 1+x) (floored at 0), hue shift ~ U(-h, h)."""

    def factor(x: float) -> float:
        return float(rng.uniform(max(0.0, 1.0 - x), 1.0 + x)) if x > 0 else 1.0

    h = float(rng.uniform(-hue, hue)) if hue > 0 else 0.0
    return factor(brightness), factor(contrast), factor(saturation), h


def colour_jitter(image: np.ndarray, b: float, c: float, s: float, h: float) -> np.ndarray:
    """Brightness, contrast, saturation, hue in this fixed order (float32 HWC in [0, 1]).

    A fixed order (rather than torchvision's random permutation) keeps the batched GPU
    path identical in distribution; saturation and hue are skipped on 1-channel images.
    """
    out = np.ascontiguousarray(image, dtype=np.float32)
    if b != 1.0:
        out = np.clip(out * np.float32(b), 0.0, 1.0)
    if c != 1.0:
        out = np.clip(AF.adjust_contrast_torchvision(out, c), 0.0, 1.0)
    if out.shape[-1] == 3:
        if s != 1.0:
            out = np.clip(AF.adjust_saturation_torchvision(out, s), 0.0, 1.0)
        if h != 0.0:
            out = np.clip(AF.adjust_hue_torchvision(out, h), 0.0, 1.0)
    return out.astype(np.float32, copy=False)


def to_gray3(image: np.ndarray) -> np.ndarray:
    """Luma replicated over 3 channels (random-grayscale augmentation)."""
    g = image @ LUMA
    return np.repeat(g[..., None], 3, axis=-1).astype(image.dtype, copy=False)


def adapt_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HWC image -> ``channels`` (1 or 3) channels: gray is repeated, RGB is reduced to luma."""
    c = image.shape[-1]
    if c == channels:
        return image
    if c == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if c == 3 and channels == 1:
        g = image.astype(np.float32) @ LUMA
        if image.dtype == np.uint8:
            return np.rint(g).astype(np.uint8)[..., None]
        return g[..., None].astype(image.dtype)
    raise ValueError(f"cannot turn a {c}-channel image into {channels} channels")


def blur_radius(sigma_max: float) -> int:
    """Kernel half-width used for every sigma up to ``sigma_max`` (3 sigma, at least 1)."""
    return max(1, int(math.ceil(3.0 * sigma_max)))


def gaussian_kernel1d(sigma: float, radius: int) -> np.ndarray:
    """Normalised 1-D Gaussian of length ``2*radius+1`` (float32)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Separable Gaussian blur with reflect-101 borders (float32 HWC)."""
    k = gaussian_kernel1d(sigma, radius)
    out = cv2.sepFilter2D(image, -1, k, k, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(image.shape)
