"""2-D slices of NIfTI volumes (``.nii`` / ``.nii.gz``, NIfTI-1 and NIfTI-2).

Registry name ``nifti``::

    {"name": "nifti", "root": "volumes/", "axis": "axial", "slice_range": [0.1, 0.9],
     "min_tissue": 0.05, "window": "brain", "image_size": 224}

* ``root`` (searched recursively) or ``csv`` (a manifest: ``path`` and optional
  ``label`` (a volume's label is every slice's), ``split``, ``patient``, ``study``).
  Without a ``patient`` column each volume is its own patient.
* ``axis``: ``axial`` (default) / ``coronal`` / ``sagittal`` or 0 / 1 / 2, in the
  canonical RAS+ orientation (:mod:`medssl.data.nifti_volume`: the slice equals one of
  ``nibabel.as_closest_canonical(img)``).
* ``slice_range``: ``[start, stop)`` slice indices (ints, negatives from the end) or
  fractions of the axis (floats in [0, 1]); ``None`` = every slice.
* ``min_tissue``: keep slices with at least this fraction of voxels above
  ``tissue_threshold`` (default: above the volume's minimum, i.e. not background).
  Reads every volume once when the set is opened.
* ``window``: :mod:`medssl.data.intensity`; ``auto`` = ``percentile`` (the volume's
  0.5th..99.5th percentile), for CT in HU a named window (``brain``, ``lung``, ...).
* ``volume``: which 3-D volume of a 4-D file (a 4-D file without it is an error).
* ``split`` / ``splits`` / ``channels`` / ``image_size`` / ``salt_file``: as for ``dicom``.

Compressed ``.nii.gz`` volumes are decompressed whole; each process keeps the last one
it read, so items of one volume read in a row are cheap (plain ``.nii`` files are read
a plane at a time).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from medssl.data.base import MedicalImageDataset
from medssl.data.intensity import parse_window, percentile_range, scale_range, window_channels, window_stack
from medssl.data.manifest_csv import class_index, read_manifest
from medssl.data.nifti_volume import READ_ERRORS, open_volume, parse_axis, read_slice, read_stored, slice_fractions
from medssl.data.pseudonym import load_salt, pseudonym
from medssl.data.radiology_common import check_one_size, finish, group_index, group_summary, select_split, size_hw
from medssl.errors import ConfigError, DataError
from medssl.fileio import PathLike
from medssl.registry import DATASETS
from medssl.tasks import TASKS

SUFFIXES = (".nii", ".nii.gz")


def _is_nifti(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _slice_bounds(slice_range: Any, n: int) -> Tuple[int, int]:
    if slice_range is None:
        return 0, n
    if not isinstance(slice_range, (list, tuple)) or len(slice_range) != 2:
        raise ConfigError(f"nifti: slice_range must be [start, stop] (ints or fractions in [0, 1]), got {slice_range!r}")
    a, b = slice_range
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)):
        return slice(a, b).indices(n)[:2]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in (a, b)) and a < b:
        return int(np.floor(a * n)), int(np.ceil(b * n))
    raise ConfigError(f"nifti: slice_range must be two ints or two fractions 0 <= start < stop <= 1, got {slice_range!r}")


@DATASETS.register("nifti")
class NiftiSlices(MedicalImageDataset):
    """Slices of NIfTI volumes (see the module docstring)."""

    def __init__(self, root: Optional[PathLike] = None, csv: Optional[PathLike] = None, split: Optional[str] = None,
                 splits: Optional[PathLike] = None, axis: Union[str, int] = "axial", slice_range: Any = None,
                 min_tissue: Optional[float] = None, tissue_threshold: Optional[float] = None, window: Any = "auto",
                 volume: Optional[int] = None, channels: Optional[int] = None,
                 image_size: Union[None, int, Sequence[int]] = None, task: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None, salt_file: Optional[PathLike] = None,
                 allow_outside_root: bool = False) -> None:
        if root is None and csv is None:
            raise ConfigError("nifti: give 'root' (a folder of .nii / .nii.gz volumes) or 'csv' (a manifest with a path column)")
        if channels is not None and channels not in (1, 3):
            raise ConfigError(f"nifti: channels must be 1, 3 or null, got {channels!r}")
        if task is not None and task not in TASKS or task == "multilabel":
            raise ConfigError(f"nifti: task must be binary, multiclass, ordinal or null, got {task!r}")
        if min_tissue is not None and not (isinstance(min_tissue, (int, float)) and 0.0 <= min_tissue <= 1.0):
            raise ConfigError(f"nifti: min_tissue must be a fraction in [0, 1] or null, got {min_tissue!r}")
        self.axis = parse_axis(axis)
        self.window = parse_window(window, "nifti: window")
        self.size_hw = size_hw(image_size, "nifti")
        self.volume = volume
        salt = load_salt(salt_file)
        self.root = Path(root).expanduser() if root is not None else None
        self.csv_path: Optional[Path] = None
        rows, columns = None, []
        if csv is not None:
            rows, columns, self.csv_path = read_manifest(Path(csv).expanduser(), self.root, allow_outside_root)
            paths, base, self._where = [r.path for r in rows], self.csv_path.parent, str(self.csv_path)
        else:
            assert self.root is not None
            if not self.root.is_dir():
                raise DataError(f"nifti: root {self.root} is not a directory")
            paths = sorted(p for p in self.root.rglob("*") if p.is_file() and _is_nifti(p)
                           and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
            base, self._where = self.root, str(self.root)
            if not paths:
                raise DataError(f"nifti: no .nii / .nii.gz file under {self.root}")
        rel = [str(p.relative_to(base)) if p.is_relative_to(base) else str(p) for p in paths]
        patients = [pseudonym(salt, "patient", (r.patient if rows is not None and r.patient else "file:" + n))
                    for r, n in zip(rows or [None] * len(paths), rel)]  # type: ignore[union-attr]
        studies = [pseudonym(salt, "study", (r.study if rows is not None and r.study else "file:" + n))
                   for r, n in zip(rows or [None] * len(paths), rel)]  # type: ignore[union-attr]
        labels, names = (class_index(rows, class_names, self.csv_path) if rows is not None and "label" in columns
                         else (None, []))
        user_splits = [r.split for r in rows] if rows is not None and "split" in columns else None
        self.split, mask = select_split(split, {"patient": patients, "study": studies}, user_splits, paths, splits,
                                        base, salt, self._where)
        keep = np.flatnonzero(mask)
        self._user_split = user_splits is not None
        self.default_splits_dir = base
        self.files = [paths[i] for i in keep]
        self._patients = [patients[i] for i in keep]
        self._studies = [studies[i] for i in keep]
        self._ornt: List[np.ndarray] = []
        self._items: List[Tuple[int, int]] = []
        sizes = []
        for v, path in enumerate(self.files):
            img, shape, ornt = open_volume(path, volume)
            self._ornt.append(ornt)
            lo, hi = _slice_bounds(slice_range, shape[self.axis])
            chosen = list(range(lo, hi))
            if min_tissue is not None and chosen:
                frac = slice_fractions(read_stored(img, volume, path), ornt, self.axis, tissue_threshold)
                chosen = [j for j in chosen if frac[j] >= min_tissue]
            plane = [s for k, s in enumerate(shape) if k != self.axis]
            sizes += [(plane[1], plane[0])] * len(chosen)  # rot90: rows = second canonical axis
            self._items += [(v, j) for j in chosen]
        if not self._items:
            raise DataError(f"nifti: no slice of {len(self.files)} volume(s) under {self._where} passes slice_range "
                            f"{slice_range!r} / min_tissue {min_tissue!r}; widen them")
        if self.size_hw is None:
            check_one_size(sizes, [self.files[v] for v, _ in self._items], self._where)
        self.in_channels = channels if channels is not None else window_channels(self.window)
        if labels is not None:
            self.class_names, self.num_classes = names, len(names)
            self.task = task or ("binary" if len(names) == 2 else "multiclass")
            per_volume = labels[keep]
            self._labels = np.asarray([per_volume[v] for v, _ in self._items], dtype=np.int64)
        else:
            self.class_names, self.num_classes, self.task = [], 0, None
            self._labels = np.full(len(self._items), -1, dtype=np.int64)
        self._labels.flags.writeable = False
        self._reset_cache()

    # -- reading ----------------------------------------------------------------------------
    def _reset_cache(self) -> None:
        self._cache: Dict[str, Any] = {"pid": None, "volume": None, "img": None, "data": None, "range": {}}

    def _volume(self, v: int) -> Tuple[Any, Optional[np.ndarray]]:
        c = self._cache
        if c["pid"] != os.getpid():
            self._reset_cache()
            c = self._cache
            c["pid"] = os.getpid()
        if c["volume"] != v:
            path = self.files[v]
            img, _, _ = open_volume(path, self.volume)
            data = read_stored(img, self.volume, path) if path.name.lower().endswith(".gz") else None
            c.update(volume=v, img=img, data=data)
        return c["img"], c["data"]

    def _auto_range(self, v: int, img: Any, data: Optional[np.ndarray]) -> Tuple[float, float]:
        ranges = self._cache["range"]
        if v not in ranges:
            ranges[v] = percentile_range(data if data is not None else read_stored(img, self.volume, self.files[v]))
        return ranges[v]

    def _get_image(self, index: int) -> np.ndarray:
        v, j = self._items[index]
        img, data = self._volume(v)
        try:
            values = read_slice(img, self._ornt[v], self.axis, j, self.volume, data)
        except READ_ERRORS as exc:
            raise DataError(f"cannot read slice {j} of NIfTI file {self.files[v]} (truncated or corrupt: "
                            f"{type(exc).__name__}: {exc})") from exc

        def auto(x: np.ndarray, mode: str) -> np.ndarray:
            from medssl.data.intensity import minmax

            if mode == "minmax":
                return minmax(x)
            return scale_range(x, *self._auto_range(v, img, data))

        return finish(window_stack(values, self.window, auto=auto), self.in_channels, self.size_hw)

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {"pid": None, "volume": None, "img": None, "data": None, "range": {}}
        return state

    # -- dataset contract -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def labels(self) -> np.ndarray:
        return self._labels

    def source_files(self) -> List[Path]:
        return ([self.csv_path] if self.csv_path is not None else []) + list(self.files)

    def slice_of(self, index: int) -> Tuple[Path, int]:
        """``(volume file, canonical slice index)`` of item ``index``."""
        v, j = self._items[index]
        return self.files[v], j

    @property
    def has_user_split(self) -> bool:
        """True when the manifest has a split column (used instead of a splits file)."""
        return self._user_split

    def object_groups(self, by: str) -> List[str]:
        """One patient or study pseudonym per file (``by``: ``patient`` | ``study``)."""
        return list(self._patients if by == "patient" else self._studies)

    def patient_index(self) -> np.ndarray:
        """(N,) int64: each item's position in :attr:`patient_names` (pseudonyms)."""
        return group_index([self._patients[v] for v, _ in self._items])[0]

    @property
    def patient_names(self) -> List[str]:
        return group_index(self._patients)[1]

    def summary(self) -> Dict[str, Any]:
        """Volumes, patients, studies and slices per patient / study (pseudonyms only)."""
        d = group_summary([self._patients[v] for v, _ in self._items], [self._studies[v] for v, _ in self._items])
        d.update(volumes=len(self.files))
        return d

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(source=self._where, axis=self.axis, volumes=len(self.files),
                 image_size=list(self.size_hw) if self.size_hw else None, window=str(self.window))
        return d
