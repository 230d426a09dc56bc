"""Optional Macenko stain normalisation (a preprocessing step, off by default).

Wraps MONAI's ``monai.apps.pathology.transforms.NormalizeHEStains`` (Macenko et al.,
2009), which works on HWC uint8 RGB arrays. A tile with too little stained tissue to
estimate two stain vectors (background, pen marks) is returned unchanged rather than
failing the whole batch: normalisation is a convenience, never a reason to drop data.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# Fewer tissue pixels than this gives a degenerate covariance (NaN stain vectors).
_MIN_TISSUE_PIXELS = 64


class MacenkoNormalizer:
    """Callable ``(H, W, 3) uint8 -> (H, W, 3) uint8`` mapping stains onto a reference.

    ``target_he``: 3x2 reference stain matrix (columns H, E; rows RGB optical density);
    ``max_cref``: reference 99th-percentile stain concentrations. Defaults are MONAI's
    (Macenko's published reference). ``beta``: optical density below which a pixel is
    background.
    """

    def __init__(
        self,
        target_he: Optional[Sequence[Sequence[float]]] = None,
        max_cref: Optional[Sequence[float]] = None,
        tli: float = 240.0,
        beta: float = 0.15,
    ) -> None:
        from monai.apps.pathology.transforms import NormalizeHEStains

        kwargs = {"tli": tli, "beta": beta}
        if target_he is not None:
            kwargs["target_he"] = np.asarray(target_he, dtype=np.float32)
        if max_cref is not None:
            kwargs["max_cref"] = np.asarray(max_cref, dtype=np.float32)
        self._norm = NormalizeHEStains(**kwargs)
        self._tli = tli
        self._beta = beta

    def _enough_tissue(self, image: np.ndarray) -> bool:
        od = -np.log((image.reshape(-1, 3).astype(np.float32) + 1.0).clip(max=self._tli) / self._tli)
        return int(np.all(od > self._beta, axis=1).sum()) >= _MIN_TISSUE_PIXELS

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Macenko normalisation needs (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if not self._enough_tissue(image):
            return image
        try:
            out = self._norm(image)
        except (ValueError, np.linalg.LinAlgError):
            return image
        return np.ascontiguousarray(out, dtype=np.uint8)
