"""The contract every medssl dataset honours.

A dataset item is ``(image, label)``:

* ``image`` -- ``numpy.ndarray`` of dtype ``uint8``, shape ``(H, W, C)`` with ``C`` in
  {1, 3} (grayscale keeps a trailing channel axis), values 0..255, *before* any
  augmentation. Augmentation (``medssl.augment``) turns it into a float tensor.
* ``label`` -- ``int`` class index for binary / multiclass / ordinal tasks, a
  ``float32`` vector of 0/1 of length ``num_classes`` for multilabel tasks, and ``-1``
  for an unlabelled item.

Every dataset also exposes ``num_classes``, ``task`` (one of :data:`medssl.tasks.TASKS`, or ``None``
when the dataset carries no labels at all), ``class_names``, ``in_channels``,
``split`` and :meth:`MedicalImageDataset.labels` (all labels at once, without decoding
images: for stratified label fractions and neighbour purity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import Dataset

from medssl.errors import DataError
from medssl.fileio import PathLike
from medssl.text import looked_at

Label = Union[int, np.ndarray]


class MedicalImageDataset(Dataset):
    """Base class: subclasses set the attributes in ``__init__`` and implement
    ``__len__``, ``_get_image`` and ``labels``."""

    num_classes: int = 0
    task: Optional[str] = None
    class_names: Sequence[str] = ()
    in_channels: int = 3
    split: str = ""

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _get_image(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        """All labels: ``(N,)`` int64 (``-1`` = unlabelled) or ``(N, num_classes)`` float32."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _get_label(self, index: int) -> Label:
        lab = self.labels()[index]
        if self.task == "multilabel":
            return np.array(lab, dtype=np.float32)  # a copy: callers may modify it
        return int(lab)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, Label]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        return self._get_image(index), self._get_label(index)

    def source_files(self) -> List[Path]:
        """Every file whose bytes make up the items and labels, in a fixed order: what
        content-keyed caches (transfer features) hash. Datasets that read no files: ``[]``."""
        return []

    @property
    def is_labelled(self) -> bool:
        return self.task is not None

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary (used by ``medssl data info``)."""
        return {
            "dataset": type(self).__name__,
            "split": self.split,
            "length": len(self),
            "task": self.task,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "in_channels": self.in_channels,
        }


def require_file(path: PathLike, what: str, how_to_get: str) -> Path:
    """Return ``path`` as a Path if it is a readable file, else raise :class:`DataError`
    naming the file, its directory and how to obtain it."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise DataError(f"{what}: expected a file but {p} is a directory. {how_to_get}")
    if p.with_name(p.name + ".gz").is_file():
        raise DataError(
            f"{what}: found {p.name}.gz but not {p.name} in {p.parent}. "
            f"Decompress it first: gunzip -k {p}.gz"
        )
    where = f"directory {p.parent} does not exist" if not p.parent.exists() else f"not in {p.parent}"
    if not p.is_absolute():  # say where a relative root led
        where += f"; looked at {looked_at(p)}"
    raise DataError(f"{what}: expected file {p.name} ({where}). {how_to_get}")


def check_image_array(arr: Any, source: str, expect_channels: Optional[int] = None) -> None:
    """Validate an image array of shape ``(N, H, W)`` or ``(N, H, W, C)`` uint8."""
    shape = getattr(arr, "shape", None)
    dtype = getattr(arr, "dtype", None)
    if shape is None or len(shape) not in (3, 4):
        raise DataError(f"{source}: expected images of shape (N, H, W) or (N, H, W, C), got shape {shape}")
    if len(shape) == 4 and shape[3] not in (1, 3):
        raise DataError(f"{source}: expected 1 or 3 channels in the last axis, got shape {shape}")
    if expect_channels is not None:
        c = 1 if len(shape) == 3 else shape[3]
        if c != expect_channels:
            raise DataError(f"{source}: expected {expect_channels} channel(s), got shape {shape}")
    if dtype != np.uint8:
        raise DataError(f"{source}: expected dtype uint8, got {dtype}; medssl reads 8-bit images")


def as_hwc(img: np.ndarray) -> np.ndarray:
    """Give a 2-D grayscale image a trailing channel axis; leave HWC images alone."""
    return img[..., None] if img.ndim == 2 else img
