"""HED colour deconvolution and HED stain jitter (Tellez et al., 2018/2019).

Colour deconvolution (Ruifrok & Johnston, 2001) writes the optical density (OD) of each
RGB pixel as a mix of three stain vectors: Haematoxylin, Eosin and DAB:

    od  = -ln(max(rgb, ε))                  rgb in [0, 1], ε = 1e-6 (Beer-Lambert units)
    hed = od @ HED_FROM_RGB                 (no clipping: the round trip stays exact)
    s'  = a * s + b   per stain channel, a ~ U(1-θ, 1+θ), b ~ U(-θ, θ)
    rgb = exp(-(hed' @ RGB_FROM_HED)), clipped to [0, 1] (never min-max rescaled)

Units: ``skimage.color.rgb2hed`` divides the same quantity by -ln(ε) ≈ 13.8. Applying
θ in those units makes b = ±0.05 an OD shift of ±0.69, which turns a real H&E tile
(mean RGB 184/132/164) into 93/28/73 or 247/249/249: not a "light" jitter. In
Beer-Lambert units θ = 0.05 shifts transmitted light by a few percent and θ = 0.2 gives
clearly visible but plausible stain variation, matching the published light / strong
settings and albumentations' ``HEStain`` defaults (shift ±0.2 in the same units).

The jitter is affine in OD space, so it folds into one 3x3 matrix and an offset:
``od' = od @ K + c`` with ``K = HED_FROM_RGB diag(a) RGB_FROM_HED`` and
``c = b @ RGB_FROM_HED`` (:func:`hed_jitter_matrix`); the batched GPU path uses the same.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

# Ruifrok & Johnston stain vectors (rows: H, E, DAB), as in skimage.color.rgb_from_hed.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
OD_EPS = 1e-6  # clamps pure black (OD of a 0 pixel = -ln 1e-6 ≈ 13.8)


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    """HWC RGB uint8 (0..255) or float (0..1) -> float32 in [0, 1]."""
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"HED needs an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.asarray(image, dtype=np.float32)


def rgb_to_od(rgb: np.ndarray) -> np.ndarray:
    """Optical density ``-ln(max(rgb, ε))`` of an RGB image (uint8, or float in [0, 1])."""
    return (-np.log(np.maximum(_as_unit_float(rgb), np.float32(OD_EPS)))).astype(np.float32)


def od_to_rgb(od: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_od`, clipped to [0, 1] (float32)."""
    return np.clip(np.exp(-od), 0.0, 1.0).astype(np.float32)


def rgb_to_hed(rgb: np.ndarray) -> np.ndarray:
    """Stain concentrations (H, E, D) of an ``(H, W, 3)`` RGB image (uint8 or float in [0, 1]).

    Equals ``-ln(1e-6) * skimage.color.rgb2hed`` where that is positive; unlike it,
    negative values (pixels off the stain plane) are kept so that :func:`hed_to_rgb`
    inverts exactly.
    """
    return (rgb_to_od(rgb) @ HED_FROM_RGB.astype(np.float32)).astype(np.float32)


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (float32, clipped) from stain concentrations ``(H, W, 3)``."""
    return od_to_rgb(np.asarray(hed, dtype=np.float32) @ RGB_FROM_HED.astype(np.float32))


def sample_hed_params(rng: np.random.Generator, theta: float) -> Tuple[np.ndarray, np.ndarray]:
    """Draw ``a ~ U(1-θ, 1+θ)`` and ``b ~ U(-θ, θ)``, one per stain channel (shape ``(3,)`` each)."""
    a = rng.uniform(1.0 - theta, 1.0 + theta, size=3)
    b = rng.uniform(-theta, theta, size=3)
    return a, b


def hed_jitter_matrix(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The OD-space map of the jitter: ``od' = od @ K + c`` with K ``(3, 3)``, c ``(3,)`` (float64)."""
    a = np.asarray(a, dtype=np.float64).reshape(3)
    b = np.asarray(b, dtype=np.float64).reshape(3)
    k = HED_FROM_RGB @ np.diag(a) @ RGB_FROM_HED
    c = b @ RGB_FROM_HED
    return k, c


def apply_hed_jitter(image: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Apply ``s' = a*s + b`` to the H, E, D channels of an RGB image.

    ``image``: ``(H, W, 3)`` uint8, or float32 in [0, 1]. Returns the same dtype
    (uint8 rounded, float clipped to [0, 1]). θ = 0 (a = 1, b = 0) is the identity.
    """
    k, c = hed_jitter_matrix(a, b)
    od = rgb_to_od(image)
    out = od_to_rgb(od @ k.astype(np.float32) + c.astype(np.float32))
    if image.dtype == np.uint8:
        return np.rint(out * 255.0).astype(np.uint8)
    return out


def hed_jitter(image: np.ndarray, rng: np.random.Generator, theta: float = 0.05) -> np.ndarray:
    """Random HED stain jitter of strength ``theta`` (see module docstring)."""
    a, b = sample_hed_params(rng, theta)
    return apply_hed_jitter(image, a, b)
