"""Write arrays as a MedMNIST-layout ``.npz`` (plus the sidecar ``<stem>.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from medssl.data.base import check_image_array
from medssl.data.medmnist.files import SPLITS, normalise_class_names
from medssl.errors import ConfigError, DataError
from medssl.fileio import PathLike, atomic_write
from medssl.tasks import normalise_task


def write_medmnist_npz(
    path: PathLike,
    splits: Mapping[str, Tuple[np.ndarray, np.ndarray]],
    info: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write ``splits`` (``{"train": (images, labels), ...}``) in the official MedMNIST layout.

    ``images``: uint8 ``(N, H, W)`` or ``(N, H, W, 3)``. ``labels``: ``(N,)`` or ``(N, 1)``
    class indices (stored as ``(N, 1)`` uint8/int64) or ``(N, K)`` 0/1 multilabel (stored
    as uint8). With ``info`` (keys ``task``, ``class_names``, optional ``description``) a
    sidecar ``<stem>.json`` is written next to it. Both writes are atomic. Returns the path.
    """
    out = Path(path)
    if out.suffix != ".npz":
        raise ConfigError(f"write_medmnist_npz: {out} must end in .npz")
    arrays: dict[str, np.ndarray] = {}
    for split, (images, labels) in splits.items():
        if split not in SPLITS:
            raise ConfigError(f"write_medmnist_npz: unknown split {split!r}; use {', '.join(SPLITS)}")
        images, labels = np.asarray(images), np.asarray(labels)
        check_image_array(images, f"write_medmnist_npz [{split}_images]")
        if labels.shape[:1] != images.shape[:1]:
            raise DataError(f"write_medmnist_npz [{split}]: {len(labels)} labels for {len(images)} images")
        if labels.ndim == 1:
            labels = labels[:, None]
        dtype = np.uint8 if labels.size == 0 or (labels.min() >= 0 and labels.max() <= 255) else np.int64
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.astype(dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(out, save)
    if info is not None:
        meta = {
            "task": normalise_task(info.get("task"), "write_medmnist_npz info", DataError),
            "class_names": normalise_class_names(info.get("class_names"), "write_medmnist_npz info"),
        }
        if info.get("description"):
            meta["description"] = str(info["description"])
        atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return out
