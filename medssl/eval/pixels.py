"""Features without a network: raw downsampled pixels and a colour histogram.

The ``--baseline pixels`` row of a label-efficiency panel: a linear probe on these says
how much of a target can be told from colour and coarse layout alone, so the report
shows what an encoder adds on top of that.
"""

from __future__ import annotations

from typing import Any, List

import numpy as np
import torch
import torch.nn.functional as F

from medssl.errors import EvaluationError
from medssl.progress import Progress

HIST_BINS = 8  # intensity bins per channel
POOL_SIZE = 8  # raw pixels: each channel area-averaged to POOL_SIZE x POOL_SIZE
CHUNK = 256  # images at a time


def colour_histogram(images: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Per channel: the fraction of pixels in each of ``bins`` equal intensity bins, the
    mean and the standard deviation (intensities in [0, 1]). ``images`` uint8 ``[N, H, W]``
    or ``[N, H, W, C]``; returns float32 ``[N, C * (bins + 2)]``."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise EvaluationError(f"colour_histogram: expected uint8 images, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise EvaluationError(f"colour_histogram: expected [N, H, W] or [N, H, W, C] images, got shape {x.shape}")
    n, c = x.shape[0], x.shape[-1]
    out = np.empty((n, c * (bins + 2)), dtype=np.float32)
    for i in range(0, n, CHUNK):  # a [chunk, pixels, bins] mask stays small at 224 px too
        px = x[i:i + CHUNK].reshape(-1, x.shape[1] * x.shape[2], c)
        which = px.astype(np.int64) * bins // 256  # bin of each pixel, 0 .. bins - 1
        hist = [(which[..., ch, None] == np.arange(bins)).mean(1) for ch in range(c)]
        v = px.astype(np.float64) / 255.0
        out[i:i + CHUNK] = np.concatenate([*hist, v.mean(1), v.std(1)], axis=1)
    return out


def _hwc(image: Any, channels: int) -> np.ndarray:
    """``image`` as uint8 ``[H, W, channels]`` (gray repeated, or RGB to luma)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise EvaluationError(f"pixel features: expected uint8 images, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == channels:
        return a
    if a.shape[-1] == 1:
        return np.repeat(a, channels, axis=-1)
    if channels == 3 and a.shape[-1] > 3:  # RGBA
        return a[..., :3]
    luma = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return luma.round().clip(0, 255).astype(np.uint8)[..., None]


def pixel_features(images: Any, size: int = POOL_SIZE, bins: int = HIST_BINS, progress: bool = False,
                   stage: str = "pixels") -> np.ndarray:
    """``[N, C * size * size + C * (bins + 2)]`` float32 of a medssl dataset (items
    ``(image HWC uint8, label)``) or a list / array of images: each channel area-averaged
    to ``size x size`` (values in [0, 1]), then :func:`colour_histogram`. The channel count
    is the first image's; later images are converted to it."""
    n = len(images)
    if n == 0:
        raise EvaluationError("pixel features: no images")

    def item(i: int) -> Any:
        it = images[i]
        return it[0] if isinstance(it, tuple) else it

    first = np.asarray(item(0))
    channels_n = 3 if first.ndim == 3 and first.shape[-1] >= 3 else 1
    out: List[np.ndarray] = []
    with Progress(n, stage, enabled=progress, unit="img") as bar:
        for start in range(0, n, CHUNK):
            batch = [_hwc(item(i), channels_n) for i in range(start, min(start + CHUNK, n))]
            for im in batch:  # images may differ in size (a folder of files)
                t = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 255.0
                pooled = F.adaptive_avg_pool2d(t, size).reshape(-1).numpy()
                out.append(np.concatenate([pooled, colour_histogram(im[None], bins)[0]]).astype(np.float32))
            bar.update(len(batch))
    return np.stack(out)
