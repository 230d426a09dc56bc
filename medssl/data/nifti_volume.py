"""2-D slices of one NIfTI volume in canonical (RAS+) orientation, read without
reorienting the whole volume.

``nibabel.as_closest_canonical`` would flip / permute the full array; here the slice is
taken from the stored array (the input axis and index that canonical axis ``k``, index
``j`` map to) and only that plane is permuted and flipped, so an uncompressed ``.nii``
is read one plane at a time from its memory map. The result equals slice ``j`` along
axis ``k`` of ``as_closest_canonical(img)`` (tested). Display: ``numpy.rot90`` of the
canonical plane, so the second remaining canonical axis (anterior for axial slices,
superior for coronal / sagittal ones) points up and the first (the patient's right for
axial / coronal) to the right: the neurological convention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np

from medssl.errors import DataError

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
READ_ERRORS = (OSError, EOFError, ValueError, MemoryError)  # zlib / gzip errors are OSError / EOFError subclasses


def parse_axis(axis: Any) -> int:
    """0, 1, 2 or ``sagittal`` / ``coronal`` / ``axial`` -> the canonical axis index."""
    if isinstance(axis, str) and axis.strip().lower() in AXES:
        return AXES[axis.strip().lower()]
    if isinstance(axis, int) and not isinstance(axis, bool) and axis in (0, 1, 2):
        return axis
    from medssl.errors import ConfigError

    raise ConfigError(f"nifti: axis must be 0, 1, 2, sagittal, coronal or axial, got {axis!r}")


def open_volume(path: Path, volume: Optional[int]) -> Tuple[Any, Tuple[int, int, int], np.ndarray]:
    """``(nibabel image, canonical 3-D shape, orientation (3, 2))`` from the header only.
    A 4-D file needs ``volume`` (which 3-D volume of the last axis)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.orientations import io_orientation

    try:
        img = nib.load(str(path))
    except (ImageFileError, *READ_ERRORS) as exc:
        raise DataError(f"cannot read NIfTI file {path} (not NIfTI, truncated or corrupt): {type(exc).__name__}: {exc}") from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 4:
        if volume is None:
            raise DataError(f"{path} is 4-D (shape {shape}: {shape[3]} volumes); medssl slices 3-D volumes. "
                            f"Pick one with volume: N (0..{shape[3] - 1}) or split the file (e.g. fslsplit)")
        if not 0 <= volume < shape[3]:
            raise DataError(f"{path}: volume {volume} asked for but the file holds {shape[3]} (0..{shape[3] - 1})")
    elif len(shape) != 3:
        raise DataError(f"{path} has {len(shape)} dimensions (shape {shape}); medssl slices 3-D volumes")
    ornt = io_orientation(img.affine)
    canon = [0, 0, 0]
    for i in range(3):
        canon[int(ornt[i, 0])] = shape[i]
    return img, (canon[0], canon[1], canon[2]), ornt


def _stored_index(ornt: np.ndarray, shape_in: Tuple[int, ...], axis: int, index: int) -> Tuple[int, int]:
    """``(input axis, input index)`` holding canonical slice ``index`` along ``axis``."""
    in_axis = int(np.flatnonzero(ornt[:, 0] == axis)[0])
    n = shape_in[in_axis]
    return in_axis, (n - 1 - index) if ornt[in_axis, 1] < 0 else index


def canonical_plane(plane: np.ndarray, ornt: np.ndarray, in_axis: int) -> np.ndarray:
    """A stored 2-D ``plane`` (the input axes other than ``in_axis``, in order) ->
    canonical axis order and direction."""
    rest = [a for a in range(3) if a != in_axis]
    order = np.argsort([ornt[a, 0] for a in rest])
    plane = plane.transpose(order)
    for pos, k in enumerate(order):
        if ornt[rest[k], 1] < 0:
            plane = np.flip(plane, axis=pos)
    return plane


def read_slice(img: Any, ornt: np.ndarray, axis: int, index: int, volume: Optional[int],
               data: Optional[np.ndarray] = None) -> np.ndarray:
    """Canonical slice ``index`` along ``axis`` as float64 (scaled by the header's
    slope / intercept), in display orientation (module docstring). ``data``: the whole
    stored array when the caller holds it (a compressed file read once)."""
    shape_in = tuple(int(s) for s in img.shape)[:3]
    in_axis, stored = _stored_index(ornt, shape_in, axis, index)
    sl: list = [slice(None)] * 3
    sl[in_axis] = stored
    if len(img.shape) == 4:
        if data is None:  # the held array is already the chosen 3-D volume
            sl.append(volume if volume is not None else 0)
    src = data if data is not None else img.dataobj
    plane = np.asarray(src[tuple(sl)], dtype=np.float64)
    return np.rot90(canonical_plane(plane, ornt, in_axis)).copy()


def read_stored(img: Any, volume: Optional[int], path: Path) -> np.ndarray:
    """The whole stored 3-D array (float32, scaled); DataError naming ``path`` when the
    file is truncated or corrupt."""
    try:
        proxy = img.dataobj
        arr = np.asarray(proxy[..., volume] if len(img.shape) == 4 and volume is not None else proxy, dtype=np.float32)
    except READ_ERRORS as exc:
        raise DataError(f"cannot read the voxels of NIfTI file {path} (truncated or corrupt: {type(exc).__name__}: "
                        f"{exc}); re-export or re-download it") from exc
    return arr.reshape(arr.shape[:3])


def slice_fractions(stored: np.ndarray, ornt: np.ndarray, axis: int, threshold: Optional[float]) -> np.ndarray:
    """Per canonical slice along ``axis``: the fraction of voxels above ``threshold``
    (``None``: above the volume's minimum, i.e. not background)."""
    thr = float(np.nanmin(stored)) if threshold is None else float(threshold)
    in_axis = int(np.flatnonzero(ornt[:, 0] == axis)[0])
    other = tuple(a for a in range(3) if a != in_axis)
    frac = (stored > thr).mean(axis=other)
    return frac[::-1].copy() if ornt[in_axis, 1] < 0 else frac
