"""The MedMNIST dataset: one split of a 2-D ``.npz`` file (keys: the package docstring)."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from medssl.data.base import MedicalImageDataset, as_hwc, check_image_array
from medssl.data.medmnist.fetch import how_to_get
from medssl.data.medmnist.files import SIZES, SPLITS, npz_filename, official_info, parse_stem, read_meta, verify_md5
from medssl.data.medmnist.npy_cache import MMAP_MIN_SIZE, check_member_size, ensure_npy_copy, npz_member_shape
from medssl.data.rowreader import RowReader
from medssl.errors import ConfigError, DataError
from medssl.fileio import PathLike
from medssl.registry import DATASETS
from medssl.text import looked_at

_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)


@DATASETS.register("medmnist")
class MedMNISTDataset(MedicalImageDataset):
    """One split of a MedMNIST 2-D ``.npz`` file (see the module docstring for the keys)."""

    def __init__(
        self,
        flag: Optional[str] = None,
        root: Optional[PathLike] = None,
        split: str = "train",
        size: Optional[int] = None,
        path: Optional[PathLike] = None,
        task: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        verify: bool = False,
        mmap: Optional[bool] = None,
        cache_dir: Optional[PathLike] = None,
    ) -> None:
        split = "val" if split == "valid" else split
        if split not in SPLITS:
            raise ConfigError(f"medmnist: split must be one of {', '.join(SPLITS)} (or 'valid'), got {split!r}")
        if size is not None and size not in SIZES:
            raise ConfigError(f"medmnist: size must be one of {SIZES} or null, got {size!r}")
        if path is not None:
            file = Path(path).expanduser()
            stem_flag, stem_size = parse_stem(file)
            flag = flag or stem_flag
            size = size if size is not None else stem_size
        elif flag is not None and root is not None:
            file = Path(root).expanduser() / npz_filename(flag, size)
        else:
            raise ConfigError("medmnist: give 'flag' and 'root' (the directory holding the npz), or 'path' to the file")
        flag = str(flag).lower()
        if flag.endswith("mnist3d"):
            raise ConfigError(f"medmnist: '{flag}' is a 3-D MedMNIST flag; medssl reads the 2-D flags only")
        self.flag, self.size, self.path, self.split = flag, size, file, split
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None

        if not file.is_file():
            where = f"directory {file.parent} does not exist" if not file.parent.is_dir() else f"not in {file.parent}"
            raise DataError(f"MedMNIST file {file.name} not found ({where}; looked at {looked_at(file)}). "
                            f"{how_to_get(flag, size, file.parent)}")
        if verify:
            verify_md5(file, flag, size)

        self.task, self.class_names, self.description = read_meta(flag, file, task, class_names)
        self.num_classes = len(self.class_names)
        self._mmap_file: Optional[Path] = None
        self._images: Optional[np.ndarray] = None
        self._labels = self._load(mmap)
        self.in_channels = 1 if len(self._shape) == 3 else int(self._shape[3])

    # -- loading ----------------------------------------------------------------------------
    def _load(self, mmap: Optional[bool]) -> np.ndarray:
        ik, lk = f"{self.split}_images", f"{self.split}_labels"
        try:
            with zipfile.ZipFile(self.path) as zf:
                keys = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
                for key in (ik, lk):
                    if key not in keys:
                        have = [s for s in SPLITS if f"{s}_images" in keys and f"{s}_labels" in keys]
                        raise DataError(
                            f"{self.path}: no key '{key}' for split '{self.split}'. The file has splits "
                            f"{have or 'none'} (keys: {', '.join(keys) or 'none'})"
                        )
                shape = npz_member_shape(zf, ik)
                use_mmap = mmap if mmap is not None else (shape is not None and len(shape) >= 3 and shape[1] >= MMAP_MIN_SIZE)
                check_member_size(zf, lk, self.path, in_memory=True)
                check_member_size(zf, ik, self.path, in_memory=not use_mmap)
                with np.load(self.path, allow_pickle=False) as z:
                    labels = z[lk]
                    images = None if use_mmap else z[ik]
                if use_mmap:
                    self._mmap_file = ensure_npy_copy(self.path, zf, ik, self.cache_dir)
                    images = self._open_mmap()
        except (DataError, ConfigError):
            raise
        except _NPZ_ERRORS as exc:
            raise DataError(f"{self.path}: not a readable .npz file (corrupt or truncated?): {type(exc).__name__}: {exc}") from exc
        expect_c = (official_info(self.flag) or {}).get("n_channels")
        check_image_array(images, f"{self.path} [{ik}]", expect_channels=expect_c)
        self._shape = tuple(images.shape)
        self._images = None if use_mmap else images
        return self._check_labels(labels, len(images), lk)

    def _open_mmap(self) -> np.ndarray:
        assert self._mmap_file is not None
        try:
            return np.load(self._mmap_file, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise DataError(f"{self._mmap_file}: cannot memory-map the cached images: {exc}; delete it to rebuild") from exc

    def _check_labels(self, labels: np.ndarray, n: int, key: str) -> np.ndarray:
        src = f"{self.path} [{key}]"
        if labels.shape[:1] != (n,):
            raise DataError(f"{src}: {labels.shape[0] if labels.ndim else 0} labels for {n} images; they must match")
        if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
            raise DataError(f"{src}: labels must be numeric, got dtype {labels.dtype}")
        if self.task == "multilabel":
            if labels.ndim != 2 or labels.shape[1] != self.num_classes:
                raise DataError(f"{src}: multilabel labels must have shape (N, {self.num_classes}), got {labels.shape}")
            if not np.isin(labels, (0, 1)).all():
                raise DataError(f"{src}: multilabel labels must be 0 or 1")
            out = labels.astype(np.float32)
        else:
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1:
                raise DataError(f"{src}: single-label task '{self.task}' needs labels of shape (N,) or (N, 1), got {labels.shape}")
            if n and not np.all(labels == np.round(labels)):
                bad = labels[labels != np.round(labels)][0]
                raise DataError(f"{src}: labels must be integer class indices, found the non-integer value {bad} "
                                f"(dtype {labels.dtype}); threshold or round them into classes first")
            if n and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise DataError(
                    f"{src}: labels must be integers in [0, {self.num_classes}) for {self.num_classes} classes, "
                    f"found values {labels.min()}..{labels.max()}"
                )
            out = labels.astype(np.int64)
        out.flags.writeable = False
        return out

    # -- dataset contract -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._shape[0])

    def labels(self) -> np.ndarray:
        """``(N,)`` int64 class indices, or ``(N, num_classes)`` float32 for multilabel (read-only)."""
        return self._labels

    def _get_image(self, index: int) -> np.ndarray:
        if self._mmap_file is not None:  # large files: one positioned read per item
            reader = getattr(self, "_reader", None)
            if reader is None or reader.pid != os.getpid():  # opened lazily, once per process
                self._reader = reader = RowReader.for_npy(self._mmap_file)
            return as_hwc(reader.read(index))
        assert self._images is not None
        return as_hwc(np.array(self._images[index], copy=True))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._mmap_file is not None:
            # never pickle open files or memory maps into workers; each re-opens the cache
            state["_images"] = None
            state["_reader"] = None
        return state

    def source_files(self) -> list[Path]:
        sidecar = self.path.with_suffix(".json")
        return [self.path] + ([sidecar] if sidecar.is_file() else [])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(flag=self.flag, size=self.size or int(self._shape[1]), path=str(self.path),
                 mmap=self._mmap_file is not None)
        return d
