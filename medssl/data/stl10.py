"""STL-10 in its official binary format (https://cs.stanford.edu/~acoates/stl10/).

Layout, as extracted from ``stl10_binary.tar.gz``::

    ROOT/stl10_binary/train_X.bin      5000 images     train_y.bin   labels 1..10, one byte each
    ROOT/stl10_binary/test_X.bin       8000 images     test_y.bin
    ROOT/stl10_binary/unlabeled_X.bin  100000 images   (no labels)
    ROOT/stl10_binary/class_names.txt  one class name per line

Each image is 3 x 96 x 96 bytes, every channel stored column-major: read as
``(N, 3, 96, 96)`` and transpose with axes ``(0, 3, 2, 1)`` to get upright HWC images.
Items are read with one ``os.pread`` each (:mod:`medssl.data.rowreader`), through
descriptors opened lazily per process and never pickled into workers, so resident memory
stays at one image even for the 2.7 GB unlabelled split. ``ROOT`` may also be the
``stl10_binary`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from medssl.data.base import MedicalImageDataset, require_file
from medssl.data.rowreader import RowReader
from medssl.errors import DataError
from medssl.fileio import PathLike
from medssl.registry import DATASETS

SOURCE = "https://cs.stanford.edu/~acoates/stl10/"
HOW_TO_GET = (
    f"Download stl10_binary.tar.gz from {SOURCE}, extract it (tar -xzf stl10_binary.tar.gz) and "
    "pass the folder that contains stl10_binary/ as the dataset root."
)
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
OFFICIAL_CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
OFFICIAL_LENGTHS = {"train": 5000, "test": 8000, "unlabeled": 100000}
FILE_SPLITS = ("train", "test", "unlabeled")
# md5 of the official extracted files, as listed by torchvision's STL10 loader (the
# archive stl10_binary.tar.gz itself: 91f7769df0f17e558f3565bffb0c7dfb).
KNOWN_MD5 = {
    "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
    "train_y.bin": "5a34089d4802c674881badbb80307741",
    "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
    "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
}
SPLITS = {
    "train": ("train",),
    "test": ("test",),
    "unlabeled": ("unlabeled",),
    "unlabelled": ("unlabeled",),
    "train+unlabeled": ("train", "unlabeled"),
    "train+unlabelled": ("train", "unlabeled"),
}


def binary_dir(root: PathLike) -> Path:
    """The folder holding the ``.bin`` files: ``root/stl10_binary`` if present, else ``root``."""
    r = Path(root).expanduser()
    return r / "stl10_binary" if (r / "stl10_binary").is_dir() else r


def _parts(split: str) -> tuple:
    key = str(split).lower()
    if key not in SPLITS:
        raise DataError(
            f"STL-10: unknown split {split!r}; valid splits are train, test, unlabeled, train+unlabeled"
        )
    return SPLITS[key]


def _count_images(path: Path) -> int:
    size = path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise DataError(
            f"STL-10: {path} has {size} bytes, not a positive multiple of 3*96*96 = {IMAGE_BYTES}; "
            f"the file is truncated or not an STL-10 image file. Download it again from {SOURCE}"
        )
    return size // IMAGE_BYTES


def read_class_names(folder: Path) -> List[str]:
    """Names from ``class_names.txt`` (one per line), or the official ten when it is absent."""
    path = folder / "class_names.txt"
    if not path.is_file():
        return list(OFFICIAL_CLASS_NAMES)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"STL-10: {path} is empty; it should list one class name per line")
    return names


def _read_labels(path: Path, n_images: int, x_path: Path, num_classes: int) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) != n_images:
        raise DataError(
            f"STL-10: {path} holds {len(raw)} labels but {x_path.name} holds {n_images} images; "
            "the X and y files of a split must match"
        )
    if raw.size and (raw.min() < 1 or raw.max() > num_classes):
        raise DataError(
            f"STL-10: {path} holds labels {int(raw.min())}..{int(raw.max())}; expected 1..{num_classes} "
            "(one byte per image, 1-based)"
        )
    return raw.astype(np.int64) - 1


class STL10(MedicalImageDataset):
    """One split of STL-10: items ``(image (96, 96, 3) uint8, label)``, label -1 if unlabelled.

    ``train+unlabeled`` concatenates the train rows (labelled) then the unlabelled rows.
    """

    in_channels = 3

    def __init__(self, root: PathLike, split: str = "train") -> None:
        self.root = Path(root).expanduser()
        self.split = str(split).lower().replace("unlabelled", "unlabeled")
        parts = _parts(split)
        folder = binary_dir(self.root)
        archive = self.root / "stl10_binary.tar.gz"
        if not (folder / f"{parts[0]}_X.bin").is_file() and archive.is_file():
            raise DataError(f"STL-10: found stl10_binary.tar.gz in {self.root} but not its contents. {HOW_TO_GET}")
        self.folder = folder
        self.class_names = tuple(read_class_names(folder))
        self.num_classes = len(self.class_names)
        self._x_paths: List[Path] = []
        self._y_paths: List[Path] = []
        self._counts: List[int] = []
        labels = []
        for part in parts:
            x_path = require_file(folder / f"{part}_X.bin", f"STL-10 {part} split", HOW_TO_GET)
            n = _count_images(x_path)
            if part == "unlabeled":
                labels.append(np.full(n, -1, dtype=np.int64))
            else:
                y_path = require_file(folder / f"{part}_y.bin", f"STL-10 {part} split", HOW_TO_GET)
                labels.append(_read_labels(y_path, n, x_path, self.num_classes))
                self._y_paths.append(y_path)
            self._x_paths.append(x_path)
            self._counts.append(n)
        self._labels = np.concatenate(labels)
        self._offsets = np.cumsum([0] + self._counts)
        self.task: Optional[str] = None if parts == ("unlabeled",) else "multiclass"
        self._maps: Optional[List[RowReader]] = None

    @property
    def files(self) -> List[Path]:
        """The files this split reads (for checksums)."""
        names = self.folder / "class_names.txt"
        return self._x_paths + self._y_paths + ([names] if names.is_file() else [])

    def source_files(self) -> List[Path]:
        return self.files

    def _readers(self) -> List[RowReader]:
        # opened lazily, once per process (a changed PID after a fork means new descriptors)
        if self._maps is None or self._maps[0].pid != os.getpid():
            self._maps = [RowReader(p, 0, (3, SIDE, SIDE), np.uint8) for p in self._x_paths]
        return self._maps

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = None
        return state

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _get_image(self, index: int) -> np.ndarray:
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        chw = self._readers()[part].read(index - self._offsets[part])
        return np.ascontiguousarray(chw.transpose(2, 1, 0))

    def labels(self) -> np.ndarray:
        return self._labels.copy()


@DATASETS.register("stl10")
def build_stl10(root: PathLike, split: str = "train") -> STL10:
    """Registry builder: ``{"name": "stl10", "root": DIR, "split": "train"|"test"|"unlabeled"|"train+unlabeled"}``."""
    return STL10(root, split)


def write_stl10_split(
    root: PathLike,
    split: str,
    images: np.ndarray,
    labels: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
) -> List[Path]:
    """Write ``images`` (N, 96, 96, 3) uint8 as ``ROOT/stl10_binary/{split}_X.bin``.

    ``labels`` are 0-based class indices (stored 1-based as in the official files) and are
    required for train/test; ``class_names`` (if given) become ``class_names.txt``.
    Returns the written paths.
    """
    if split not in FILE_SPLITS:
        raise DataError(f"write_stl10_split: split must be one of {', '.join(FILE_SPLITS)}, got {split!r}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (SIDE, SIDE, 3) or images.dtype != np.uint8:
        raise DataError(f"write_stl10_split: images must be (N, 96, 96, 3) uint8, got {images.shape} {images.dtype}")
    folder = Path(root).expanduser() / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    x_path = folder / f"{split}_X.bin"
    # (0, 3, 2, 1) is its own inverse: HWC -> the column-major CHW of the official files.
    np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tofile(x_path)
    out = [x_path]
    if split != "unlabeled":
        if labels is None:
            raise DataError(f"write_stl10_split: the {split} split needs labels")
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(y) != len(images) or (y.size and (y.min() < 0 or y.max() > 254)):
            raise DataError(f"write_stl10_split: need {len(images)} labels in 0..254, got {len(y)}")
        y_path = folder / f"{split}_y.bin"
        (y + 1).astype(np.uint8).tofile(y_path)
        out.append(y_path)
    if class_names is not None:
        names_path = folder / "class_names.txt"
        names_path.write_text("".join(f"{n}\n" for n in class_names))
        out.append(names_path)
    return out
