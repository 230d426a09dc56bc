"""PatchCamelyon (PCAM): 96 x 96 H&E patches from lymph-node sections, binary labels.

Official layout (https://github.com/basveeling/pcam), one pair of HDF5 files per split::

    ROOT/camelyonpatch_level_2_split_{train,valid,test}_x.h5   dataset "x": (N, 96, 96, 3) uint8
    ROOT/camelyonpatch_level_2_split_{train,valid,test}_y.h5   dataset "y": (N, 1, 1, 1) uint8
    ROOT/camelyonpatch_level_2_split_{split}_meta.csv          optional

Label 1 (``tumor``) means at least one pixel of tumour tissue lies in the centre 32 x 32
region of the patch.

HDF5 handles do not survive ``fork`` and cannot be pickled, so the image file is opened
lazily: on the first ``__getitem__`` in each process (a changed PID after a fork means
a fresh handle), and never before. Construction opens, validates and closes both files;
the labels (N bytes) are read then, the images never all at once.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from medssl.data.base import MedicalImageDataset, require_file
from medssl.hdf5 import local_dataset
from medssl.errors import ConfigError, DataError
from medssl.fileio import PathLike
from medssl.registry import DATASETS

SOURCE = "https://github.com/basveeling/pcam"
HOW_TO_GET = (
    f"Download the PCAM files from {SOURCE} (Zenodo record 2546921), gunzip them and put the "
    "camelyonpatch_level_2_split_*.h5 files directly in the dataset root."
)
CLASS_NAMES = ("normal", "tumor")
MIN_TILE = 32  # the label is defined on the centre 32 x 32 px region
# Split names on disk are train/valid/test; "val" and "validation" are accepted aliases.
SPLIT_ALIASES = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
OFFICIAL_SPLITS = ("train", "valid", "test")
OFFICIAL_LENGTHS = {"train": 262144, "valid": 32768, "test": 32768}
# md5 of the *decompressed* official .h5 files, as published by the kaiko-ai/eva
# PatchCamelyon loader; not verified here (no copy of PCAM is available offline).
KNOWN_MD5 = {
    "camelyonpatch_level_2_split_train_x.h5": "01844da899645b4d6f84946d417ba453",
    "camelyonpatch_level_2_split_train_y.h5": "0781386bf6c2fb62d58ff18891466aca",
    "camelyonpatch_level_2_split_valid_x.h5": "81cf9680f1724c40673f10dc88e909b1",
    "camelyonpatch_level_2_split_valid_y.h5": "94d8aacc249253159ce2a2e78a86e658",
    "camelyonpatch_level_2_split_test_x.h5": "2614b2e6717d6356be141d9d6dbfcb7e",
    "camelyonpatch_level_2_split_test_y.h5": "11ed647efe9fe457a4eb45df1dba19ba",
}


def canonical_split(split: str) -> str:
    """The on-disk split name (``train``/``valid``/``test``) for a user split name."""
    key = str(split).lower()
    if key not in SPLIT_ALIASES:
        raise DataError(
            f"PCAM: unknown split {split!r}; valid splits are train, valid (alias val), test"
        )
    return SPLIT_ALIASES[key]


def split_files(root: PathLike, split: str) -> Dict[str, Path]:
    """Paths of the ``x``, ``y`` and ``meta`` files of ``split`` under ``root`` (may not exist)."""
    s = canonical_split(split)
    base = Path(root).expanduser() / f"camelyonpatch_level_2_split_{s}"
    return {"x": Path(f"{base}_x.h5"), "y": Path(f"{base}_y.h5"), "meta": Path(f"{base}_meta.csv")}


def _open_h5(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"PCAM: cannot read {path} as HDF5 (truncated or corrupt download?): {exc}. "
            f"Download it again from {SOURCE} and check its md5 with `medssl data info`."
        ) from exc


def _dataset(handle: Any, key: str, path: Path) -> Any:
    obj = local_dataset(handle, key, path)
    if obj is None:
        raise DataError(
            f"PCAM: {path} has no HDF5 dataset {key!r} (found keys {sorted(handle.keys())}); "
            f"an official PCAM {key} file stores its array under {key!r}"
        )
    return obj


def _read_labels(path: Path) -> np.ndarray:
    with _open_h5(path) as f:
        y = _dataset(f, "y", path)
        if y.ndim == 0 or int(np.prod(y.shape[1:])) != 1:
            raise DataError(f"PCAM: {path} dataset 'y' has shape {y.shape}; expected (N, 1, 1, 1) or (N,)")
        if y.dtype.kind not in "uib":
            raise DataError(f"PCAM: {path} dataset 'y' has dtype {y.dtype}; expected uint8 labels 0/1")
        try:
            labels = np.asarray(y[()]).reshape(-1).astype(np.int64)
        except OSError as exc:
            raise DataError(f"PCAM: cannot read labels from {path} (truncated or corrupt?): {exc}") from exc
    bad = labels[(labels != 0) & (labels != 1)]
    if bad.size:
        raise DataError(f"PCAM: {path} holds label {int(bad[0])}; PCAM labels are 0 (normal) or 1 (tumor)")
    return labels


def _check_images(path: Path) -> tuple:
    with _open_h5(path) as f:
        x = _dataset(f, "x", path)
        if x.ndim != 4 or x.shape[3] != 3:
            raise DataError(f"PCAM: {path} dataset 'x' has shape {x.shape}; expected (N, 96, 96, 3) (HWC RGB)")
        if x.dtype != np.uint8:
            raise DataError(f"PCAM: {path} dataset 'x' has dtype {x.dtype}; expected uint8")
        if min(x.shape[1], x.shape[2]) < MIN_TILE:
            raise DataError(
                f"PCAM: {path} holds {x.shape[1]} x {x.shape[2]} px tiles; PCAM-layout tiles must be at least "
                f"{MIN_TILE} x {MIN_TILE} px, because the label describes the centre {MIN_TILE} x {MIN_TILE} px of "
                "the tile (official tiles are 96 x 96). Smaller tiles belong in a folder or MedMNIST-layout dataset"
            )
        return tuple(int(s) for s in x.shape)


class PCAM(MedicalImageDataset):
    """One split of PatchCamelyon read from the official HDF5 files.

    Items are ``(image (96, 96, 3) uint8, label int)``; label 1 = tumour in the centre
    32 x 32 region.
    """

    task = "binary"
    num_classes = 2
    class_names = CLASS_NAMES
    in_channels = 3

    def __init__(self, root: PathLike, split: str = "train") -> None:
        self.root = Path(root).expanduser()
        self.split = canonical_split(split)
        paths = split_files(self.root, self.split)
        what = f"PCAM {self.split} split"
        self.x_path = require_file(paths["x"], what, HOW_TO_GET)
        self.y_path = require_file(paths["y"], what, HOW_TO_GET)
        self.meta_path: Optional[Path] = paths["meta"] if paths["meta"].is_file() else None
        x_shape = _check_images(self.x_path)
        n_images, self.image_shape = x_shape[0], x_shape[1:]
        self._labels = _read_labels(self.y_path)
        if len(self._labels) != n_images:
            raise DataError(
                f"PCAM: {self.x_path.name} holds {n_images} images but {self.y_path.name} holds "
                f"{len(self._labels)} labels (in {self.root}); the two files of a split must match"
            )
        self._reset_handle()

    @property
    def files(self) -> List[Path]:
        """The files this split reads (for checksums)."""
        return [self.x_path, self.y_path] + ([self.meta_path] if self.meta_path else [])

    def source_files(self) -> List[Path]:
        return self.files

    def _reset_handle(self) -> None:
        self._h5: Any = None
        self._x: Any = None
        self._pid: Optional[int] = None

    def _images(self) -> Any:
        # A handle inherited through fork shares HDF5 library state with the parent:
        # reopen in the new process instead of using (or closing) it.
        if self._x is None or self._pid != os.getpid():
            self._h5 = _open_h5(self.x_path)
            self._x = _dataset(self._h5, "x", self.x_path)
            self._pid = os.getpid()
        return self._x

    def close(self) -> None:
        """Close the image file handle of this process (reopened on the next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._reset_handle()

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_h5=None, _x=None, _pid=None)
        return state

    def __len__(self) -> int:
        return len(self._labels)

    def _get_image(self, index: int) -> np.ndarray:
        try:
            return np.asarray(self._images()[index])
        except OSError as exc:
            raise DataError(f"PCAM: cannot read image {index} from {self.x_path} (truncated or corrupt?): {exc}") from exc

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def meta(self) -> Dict[str, List[str]]:
        """The optional ``*_meta.csv`` as ``{column: values}`` (strings); empty when absent."""
        if self.meta_path is None:
            return {}
        with open(self.meta_path, newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            return {}
        header, body = rows[0], rows[1:]
        return {name or "index": [r[i] for r in body] for i, name in enumerate(header)}


@DATASETS.register("pcam")
def build_pcam(root: PathLike, split: str = "train") -> PCAM:
    """Registry builder: ``{"name": "pcam", "root": DIR, "split": "train"|"val"|"test"}``."""
    return PCAM(root, split)


def write_pcam_split(
    root: PathLike,
    split: str,
    images: np.ndarray,
    labels: Sequence[int],
    meta: Optional[Mapping[str, Sequence[Any]]] = None,
    compression: Optional[str] = None,
) -> List[Path]:
    """Write ``images`` (N, H, W, 3) uint8 and 0/1 ``labels`` (N,) in the official PCAM layout.

    The x dataset is stored uncompressed by default: reading then costs a copy per item,
    while ``compression="gzip"`` (one image per chunk) makes files ~10% smaller but every
    read decompresses, several times slower (docs/benchmarks.md, "PCAM reading"). ``meta``
    (columns of length N) becomes
    ``*_meta.csv``. Timestamps are not stored, so equal inputs give byte-identical files.
    Returns the written paths.
    """
    import h5py

    if compression not in (None, "gzip"):
        raise ConfigError(f"write_pcam_split: compression must be None or 'gzip', got {compression!r}")
    images = np.asarray(images)
    y = np.asarray(labels).reshape(-1)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise DataError(f"write_pcam_split: images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if len(y) != len(images):
        raise DataError(f"write_pcam_split: {len(images)} images but {len(y)} labels")
    paths = split_files(root, split)
    paths["x"].parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(paths["x"], "w") as f:
        f.create_dataset(
            "x", data=images, **({"chunks": (1,) + images.shape[1:], "compression": "gzip", "compression_opts": 4}
                                  if compression == "gzip" else {}),
            track_times=False,
        )
    with h5py.File(paths["y"], "w") as f:
        f.create_dataset("y", data=y.astype(np.uint8).reshape(-1, 1, 1, 1), track_times=False)
    out = [paths["x"], paths["y"]]
    if meta is not None:
        cols = {k: list(v) for k, v in meta.items()}
        for k, v in cols.items():
            if len(v) != len(y):
                raise DataError(f"write_pcam_split: meta column {k!r} has {len(v)} rows, expected {len(y)}")
        with open(paths["meta"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([""] + list(cols))
            for i in range(len(y)):
                w.writerow([i] + [cols[k][i] for k in cols])
        out.append(paths["meta"])
    return out
