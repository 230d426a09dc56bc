"""Tissue mask of a slide from a low-resolution image, and the tissue fraction of each tile.

The method follows CLAM's tissue segmentation (Lu et al., "Data-efficient and weakly
supervised computational pathology on whole-slide images", Nat. Biomed. Eng. 2021;
``WholeSlideImage.segmentTissue``): convert to HSV, median-blur the saturation channel
and threshold it with Otsu's method. Glass, background and pen-free white areas have low
saturation, stained tissue high; saturation is robust to the overall brightness of a
scan, which grey-level Otsu (as in TIAToolbox's ``OtsuTissueMasker``) is not. CLAM's
contour filtering and hole filling are left out: a tile's tissue *fraction* is what we
threshold, which already ignores specks.
"""

from __future__ import annotations

import numpy as np

from medssl.errors import DataError

MEDIAN_SIZE = 7  # CLAM's default median-blur kernel on its segmentation level
# Below this saturation spread (0..255) an image holds no stain at all (blank glass):
# Otsu would then split noise in two, so nothing is called tissue.
MIN_SATURATION_RANGE = 8


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (H, W) uint8 (0..255) of an (H, W, 3) uint8 RGB image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"tissue mask: expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    mx = rgb.max(axis=2).astype(np.int32)
    mn = rgb.min(axis=2).astype(np.int32)
    sat = np.where(mx > 0, (mx - mn) * 255 // np.maximum(mx, 1), 0)
    return sat.astype(np.uint8)


def otsu_tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask, True on tissue: Otsu threshold of median-blurred saturation."""
    import cv2
    from skimage.filters import threshold_otsu

    sat = cv2.medianBlur(np.ascontiguousarray(saturation(rgb)), MEDIAN_SIZE)
    if int(sat.max()) - int(sat.min()) < MIN_SATURATION_RANGE:
        return np.zeros(sat.shape, dtype=bool)
    return sat > threshold_otsu(sat)


def tile_fractions(mask: np.ndarray, corners0: np.ndarray, footprint0: float, scale: float) -> np.ndarray:
    """Fraction (N,) float32 of mask pixels set under each tile.

    ``corners0`` (N, 2) are tile top-left ``(x, y)`` in level-0 pixels, ``footprint0`` the
    tile side in level-0 pixels and ``scale`` the level-0 pixels per mask pixel. Uses a
    summed-area table, so the cost does not depend on the tile size.
    """
    h, w = mask.shape
    sat = np.zeros((h + 1, w + 1), dtype=np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(mask.astype(np.int64), axis=0), axis=1)
    c = np.asarray(corners0, dtype=np.float64).reshape(-1, 2)
    x0 = np.clip(np.floor(c[:, 0] / scale).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(c[:, 1] / scale).astype(np.int64), 0, h - 1)
    x1 = np.clip(np.ceil((c[:, 0] + footprint0) / scale).astype(np.int64), x0 + 1, w)
    y1 = np.clip(np.ceil((c[:, 1] + footprint0) / scale).astype(np.int64), y0 + 1, h)
    inside = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return (inside / ((x1 - x0) * (y1 - y0))).astype(np.float32)
