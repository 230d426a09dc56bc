"""Frozen-encoder features: run an encoder over a dataset (or an array of images) once."""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medssl.device import cpu_has_native_bf16
from medssl.errors import ConfigError
from medssl.precision import choose_cpu_precision
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

    ``data`` is a medssl dataset (items ``(image HWC uint8, label)``) or an array of images
    ``[N, H, W(, C)]`` uint8 (labels then come back as ``-1``). ``indices`` selects a subset
    of a dataset. The encoder is run in eval mode and left in the mode it was in, under
    ``torch.inference_mode`` (no autograd bookkeeping at all). ``device`` (default: where the
    encoder's parameters are) moves the encoder there first.
    ``progress`` shows the images done under the name ``stage`` (:mod:`medssl.progress`).
    ``precision``: ``auto`` (on a CPU with native bf16, bf16 autocast where a probe of the
    encoder on the first batch finds it faster, :func:`feature_precision`; float32
    elsewhere), ``bf16`` or ``off``; the features come back float32 either way.
    Both outputs are numpy so they go straight to scikit-learn, ``np.savez`` or pandas;
    ``torch.from_numpy`` turns the features back into a tensor without a copy.
    """
    if isinstance(data, np.ndarray):
        arr = data if data.ndim == 4 else data[..., None]
        data = _ArrayDataset(arr)
    ds = _Preprocessed(data, preprocess, indices)
    if device is not None:
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
        if cpu and not cpu_has_native_bf16():
            print("medssl: warning: precision 'bf16' but this CPU has no native bf16; features in float32",
                  file=sys.stderr)
            return None
        return torch.bfloat16
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
    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int]:
        return self.images[i], -1
