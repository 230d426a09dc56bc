"""Geometric operations on HWC numpy images: the D4 group, random resized crops, rotations.

Every function is pure; randomness comes from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Tuple

import cv2
import numpy as np

D4_ORDER = 8


def d4(image: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` (0..7) of the dihedral group D4 acting on an ``(H, W, ...)`` image.

    ``k % 4`` counter-clockwise quarter turns, then a horizontal flip when ``k >= 4``;
    k = 0 is the identity. Tissue has no canonical orientation, so all 8 are valid
    views of the same patch.
    """
    if not 0 <= k < D4_ORDER:
        raise ValueError(f"D4 element must be in 0..7, got {k}")
    out = np.rot90(image, k % 4, axes=(0, 1))
    if k >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def random_d4(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 D4 elements, each with probability 1/8."""
    return d4(image, int(rng.integers(D4_ORDER)))


class CropBox(NamedTuple):
    """A crop window in source pixels: rows ``top:top+height``, columns ``left:left+width``."""

    top: int
    left: int
    height: int
    width: int


def centre_box(h: int, w: int, side: int) -> Tuple[int, int, int, int]:
    """The central ``side x side`` square as ``(row0, row1, col0, col1)`` (half-open)."""
    r0, c0 = (h - side) // 2, (w - side) // 2
    return r0, r0 + side, c0, c0 + side


def sample_resized_crop(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: Tuple[float, float],
    ratio: Tuple[float, float],
    keep_center: int = 0,
    attempts: int = 10,
) -> CropBox:
    """A random crop with area fraction in ``scale`` and aspect ratio (w/h) in ``ratio``.

    Same sampling as torchvision's RandomResizedCrop (uniform area, log-uniform ratio,
    up to ``attempts`` tries, then a centre crop). With ``keep_center = k > 0`` every
    returned box contains the central ``k x k`` square: for PCAM (label defined by the
    centre 32x32 of a 96x96 tile) pass k = 32.
    """
    keep = min(int(keep_center), height, width)
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    r0, r1, c0, c1 = centre_box(height, width, keep)
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * r)))
        ch = int(round(math.sqrt(target / r)))
        if not (0 < cw <= width and 0 < ch <= height):
            continue
        if keep and (ch < keep or cw < keep):
            continue
        # Allowed top-left positions; with keep > 0 the window must cover [r0, r1) x [c0, c1).
        top_lo, top_hi = (max(0, r1 - ch), min(height - ch, r0)) if keep else (0, height - ch)
        left_lo, left_hi = (max(0, c1 - cw), min(width - cw, c0)) if keep else (0, width - cw)
        top = int(rng.integers(top_lo, top_hi + 1))
        left = int(rng.integers(left_lo, left_hi + 1))
        return CropBox(top, left, ch, cw)
    return fallback_crop(height, width, ratio)


def fallback_crop(height: int, width: int, ratio: Tuple[float, float]) -> CropBox:
    """Largest centred crop whose aspect ratio is within ``ratio`` (torchvision's fallback
    when no sampled crop fits; the batched path of :mod:`medssl.augment.gpu` uses its size)."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        cw, ch = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = height, int(round(height * ratio[1]))
    else:
        cw, ch = width, height
    return CropBox((height - ch) // 2, (width - cw) // 2, ch, cw)


def crop_resize(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Cut ``box`` out of an HWC image and resize it to ``size x size`` (keeps the channel axis).

    Area interpolation when shrinking (anti-aliased), bilinear when enlarging.
    """
    patch = image[box.top : box.top + box.height, box.left : box.left + box.width]
    return resize(patch, size)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HWC image to ``size x size`` (area when shrinking, bilinear when enlarging)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=interp)
    return out.reshape(size, size, image.shape[2]) if image.ndim == 3 else out


def centre_crop_resize(image: np.ndarray, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    """Deterministic eval view: the centred square of side ``crop_fraction * min(H, W)``,
    resized to ``size``."""
    h, w = image.shape[:2]
    side = max(1, int(round(min(h, w) * crop_fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    return crop_resize(image, CropBox(top, left, side, side), size)


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the image centre by ``degrees`` (counter-clockwise), reflecting at the border
    so that no black corners appear."""
    if degrees == 0:
        return image
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(image.shape)
