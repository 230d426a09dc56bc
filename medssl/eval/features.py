"""Frozen-encoder features: run an encoder over a dataset (or an array of images) once."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medssl.errors import ConfigError
from medssl.precision import choose_cpu_precision, forced_bf16
from medssl.progress import Progress

Preprocess = Callable[[np.ndarray], torch.Tensor]


class _Preprocessed(Dataset):
    """``(tensor CHW, label)`` of a medssl dataset's ``(image HWC uint8, label)`` items."""

    def __init__(self, dataset: Any, preprocess: Preprocess, indices: Optional[Sequence[int]]) -> None:
        self.dataset = dataset
        self.preprocess = preprocess
        self.indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, Any]:
        image, label = self.dataset[self.indices[i]]
        return self.preprocess(image), label


def embed(
    encoder: nn.Module,
    data: Any,
    preprocess: Preprocess,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    device: Optional[torch.device] = None,
    indices: Optional[Sequence[int]] = None,
    progress: bool = False,
    stage: str = "embed",
    precision: str = "auto",
) -> Tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``data`` as numpy arrays: ``(features [N, F] float32,
    labels [N] or [N, C])``.

    ``data`` is a medssl dataset (items ``(image HWC uint8, label)``), an array of images
    ``[N, H, W(, C)]`` uint8 or a list of HWC images (labels then come back as ``-1``; an
    empty batch gives ``(0, F)`` features). A channel-first or ambiguous array is a
    ConfigError naming the shapes accepted; so are ``batch_size < 1`` and ``indices``
    outside ``[0, len(data))``. ``indices`` selects a subset of a dataset. The encoder is run in eval mode and left in the mode it was in, under
    ``torch.inference_mode`` (no autograd bookkeeping at all). ``device`` (default: where the
    encoder's parameters are) moves the encoder there first.
    ``progress`` shows the images done under the name ``stage`` (:mod:`medssl.progress`).
    ``precision``: ``auto`` (on a CPU with native bf16, bf16 autocast where a probe of the
    encoder on the first batch finds it faster, :func:`feature_precision`; float32
    elsewhere), ``bf16`` or ``off``; the features come back float32 either way.
    Both outputs are numpy so they go straight to scikit-learn, ``np.savez`` or pandas;
    ``torch.from_numpy`` turns the features back into a tensor without a copy.
    """
    from medssl.augment.layout import image_list

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"embed: batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(data, (str, bytes, os.PathLike)):
        raise ConfigError(f"embed(data): got the path {data!r}; open it first (medssl.open_dataset(path)) or pass "
                          "an array or list of images")
    if isinstance(data, (np.ndarray, list, tuple)):
        data = _ArrayDataset(image_list(data, "embed(data)") if len(data) else [])
    if indices is not None:
        idx = np.asarray(indices)
        if idx.size and (idx.dtype.kind not in "iu" or idx.ndim != 1):
            raise ConfigError(f"embed: indices must be a 1-D sequence of integers, got shape {idx.shape} "
                              f"dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= len(data)):
            raise ConfigError(f"embed: indices must be in [0, {len(data)}) for {len(data)} images, got "
                              f"{int(idx.min())}..{int(idx.max())}")
    ds = _Preprocessed(data, preprocess, indices)
    if device is not None:
        if not isinstance(device, torch.device) or (device.type == "cuda" and not torch.cuda.is_available()):
            from medssl.device import resolve_device

            device = resolve_device(str(device), "embed(device=...)")  # "cuda" without CUDA: our error
        encoder.to(device)  # the features are computed where the images are sent
    device = device or next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    # In-process batching when there are no workers: a DataLoader adds its collation and
    # iterator machinery to every batch for nothing (docs/benchmarks.md, "Feature extraction").
    loader = (_batches(ds, batch_size) if num_workers == 0
              else DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers))
    bar = Progress(len(ds), stage, enabled=progress, unit="img")
    dtype: Optional[torch.dtype] = None
    try:
        with torch.inference_mode():
            for x, y in loader:
                x = x.to(device)
                if not feats:
                    dtype = feature_precision(encoder, x, precision, n_items=len(ds))
                with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    out = encoder(x)
                feats.append(out.float().cpu().numpy())
                labels.append(np.asarray(y))
                bar.update(len(x))
    finally:
        bar.close()
        encoder.train(was_training)
    if not feats:  # nothing to embed: an empty result of the right width
        width = int(getattr(encoder, "num_features", 0) or 0)
        return np.zeros((0, width), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(feats), np.concatenate(labels)


# Probing costs about four forward passes of one batch: only worth it for this many batches
PROBE_MIN_BATCHES = 8


def feature_precision(encoder: nn.Module, batch: torch.Tensor, precision: str = "auto",
                      n_items: Optional[int] = None) -> Optional[torch.dtype]:
    """The autocast dtype :func:`embed` runs ``encoder`` in for batches like ``batch``
    ``[B, C, H, W]`` (None: float32).

    ``off``: float32. ``bf16``: bf16 on a CUDA device or a CPU with native bf16 (float32
    with a warning elsewhere). ``auto``: on a CPU, the rule of ``train.amp: auto``
    (:func:`medssl.precision.choose_cpu_precision`: both precisions timed on this batch,
    bf16 kept when >= 1.15x faster, cached per machine, encoder and shape), skipped (float32)
    when the data set holds fewer than :data:`PROBE_MIN_BATCHES` batches of ``n_items``;
    float32 on CUDA (features there were always float32; not re-measured).
    """
    if precision not in ("auto", "off", "bf16"):
        raise ConfigError(f"precision must be auto, off or bf16, got {precision!r}")
    if precision == "off":
        return None
    cpu = batch.device.type == "cpu"
    if precision == "bf16":
        return forced_bf16("precision", "features in float32") if cpu else torch.bfloat16
    if not cpu or (n_items is not None and n_items < PROBE_MIN_BATCHES * len(batch)):
        return None

    def forward(model: nn.Module, bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(batch)

    shape = {"batch": len(batch), "chw": list(batch.shape[1:]), "step": "embed",
             "channels_last": bool(batch.is_contiguous(memory_format=torch.channels_last) and batch.ndim == 4)}
    choice = choose_cpu_precision(encoder, forward, shape)
    if choice.source == "probe":  # once per machine, encoder and shape; cached after
        print(f"medssl: {choice.describe('feature precision')}", file=sys.stderr)
    return choice.dtype


def _batches(ds: Dataset, batch_size: int) -> Iterator[Tuple[torch.Tensor, List[Any]]]:
    """``(stacked images, labels)`` of consecutive ``batch_size`` items of ``ds``, in order."""
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        yield torch.stack([x for x, _ in items]), [y for _, y in items]


class _ArrayDataset(Dataset):
    """``(image, -1)`` of a list of images whose layout :mod:`medssl.augment.layout` checked."""

    def __init__(self, images: List[np.ndarray]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int]:
        return self.images[i], -1
