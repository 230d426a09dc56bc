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

from medssl.data.intensity import parse_window, percentile_range, scale_range, window_channels, window_stack
from medssl.data.manifest_csv import read_manifest
from medssl.data.nifti_volume import READ_ERRORS, open_volume, parse_axis, read_slice, read_stored, slice_fractions
from medssl.data.pseudonym import load_salt, pseudonym
from medssl.data.radiology_base import RadiologyDataset
from medssl.data.radiology_common import check_one_size, finish, size_hw
from medssl.errors import ConfigError, DataError
from medssl.fileio import PathLike
from medssl.registry import DATASETS

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
class NiftiSlices(RadiologyDataset):
    """Slices of NIfTI volumes (see the module docstring)."""

    def __init__(self, root: Optional[PathLike] = None, csv: Optional[PathLike] = None, split: Optional[str] = None,
                 splits: Optional[PathLike] = None, axis: Union[str, int] = "axial", slice_range: Any = None,
                 min_tissue: Optional[float] = None, tissue_threshold: Optional[float] = None, window: Any = "auto",
                 volume: Optional[int] = None, channels: Optional[int] = None,
                 image_size: Union[None, int, Sequence[int]] = None, task: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None, salt_file: Optional[PathLike] = None,
                 allow_outside_root: bool = False) -> None:
        self._check_args("nifti", root, csv, channels, task, ".nii / .nii.gz volumes")
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
        keep, labels, names = self._select(split, splits, rows, columns, paths, patients, studies, base, salt, class_names)
        self.files = [paths[i] for i in keep]
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
        self._set_labels(labels, names, keep, task)
        self._reset_cache()

    # -- reading ----------------------------------------------------------------------------
    def _fresh_cache(self) -> Dict[str, Any]:
        return {"pid": None, "volume": None, "img": None, "data": None, "range": {}}

    def _reset_cache(self) -> None:
        self._cache = self._fresh_cache()

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

    def _object_paths(self) -> List[Path]:
        return list(self.files)

    def slice_of(self, index: int) -> Tuple[Path, int]:
        """``(volume file, canonical slice index)`` of item ``index``."""
        v, j = self._items[index]
        return self.files[v], j

    def summary(self) -> Dict[str, Any]:
        """Volumes, patients, studies and slices per patient / study (pseudonyms only)."""
        d = self._group_summary()
        d.update(volumes=len(self.files))
        return d

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(source=self._where, axis=self.axis, volumes=len(self.files),
                 image_size=list(self.size_hw) if self.size_hw else None, window=str(self.window))
        return d
