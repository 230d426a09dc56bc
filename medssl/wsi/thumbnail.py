"""A per-slide thumbnail PNG with the kept tiles outlined: the check people actually do."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medssl.fileio import atomic_write

KEPT_COLOUR = (0, 200, 0)
MASK_TINT = (40, 90, 255)  # tissue pixels are tinted so a mask that missed tissue shows


def draw_tiles(thumb: np.ndarray, mask: np.ndarray, corners0: np.ndarray, footprint0: float,
               scale: float) -> np.ndarray:
    """``thumb`` (h, w, 3) uint8 with the tissue ``mask`` (h, w) lightly tinted and a box
    around each tile in ``corners0`` (N, 2; level-0 px, ``footprint0`` px wide); ``scale``
    is level-0 pixels per thumbnail pixel. Returns a new (h, w, 3) uint8 image."""
    from PIL import Image, ImageDraw

    img = thumb.astype(np.float32)
    img[mask] = 0.8 * img[mask] + 0.2 * np.asarray(MASK_TINT, dtype=np.float32)
    pil = Image.fromarray(img.round().astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    side = footprint0 / scale
    for x, y in np.asarray(corners0, dtype=np.float64).reshape(-1, 2) / scale:
        draw.rectangle([x, y, x + side - 1, y + side - 1], outline=KEPT_COLOUR, width=1)
    return np.asarray(pil)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write an (h, w, 3) uint8 image as PNG, atomically."""
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
