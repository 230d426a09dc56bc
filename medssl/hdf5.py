"""HDF5 datasets whose bytes must live in the file medssl was given.

HDF5 lets a dataset's data live elsewhere: an **external link** (the name points into
another file), a **virtual dataset** (assembled from datasets in other files) and
**external storage** (raw bytes kept in other files). When such a source is missing,
h5py fills a virtual dataset with zeros and raises nothing, so a PCAM ``x.h5`` copied
without its sources reads as black tiles and training "works". medssl reads only data
stored in the file itself: every HDF5 dataset it reads goes through :func:`local_dataset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from medssl.errors import DataError

_FIX = ("medssl reads only data stored in the file itself (a copy without the other file reads as zeros "
        "or fails later); write a self-contained file, e.g. read the array with h5py and save it with "
        "create_dataset into a new file")


def local_dataset(handle: Any, key: str, path: Path) -> Optional[Any]:
    """``handle[key]`` as an ``h5py.Dataset`` stored in ``path`` itself; ``None`` when ``key``
    is absent or not a dataset (the caller words that error). Raises DataError when the
    data lives in another file: external link, virtual dataset with sources in other
    files, or external raw storage."""
    import h5py

    link = handle.get(key, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise DataError(f"{path}: dataset {key!r} is an HDF5 external link to {link.filename}:{link.path}; {_FIX}")
    obj = handle.get(key)
    if not isinstance(obj, h5py.Dataset):
        return None
    if Path(obj.file.filename).resolve() != Path(handle.filename).resolve():  # reached through a linked group
        raise DataError(f"{path}: dataset {key!r} resolves into another file, {obj.file.filename}; {_FIX}")
    if obj.is_virtual:
        sources = sorted({s.file_name for s in obj.virtual_sources()} - {"."})
        if sources:
            raise DataError(f"{path}: dataset {key!r} is an HDF5 virtual dataset mapped from "
                            f"{', '.join(sources)}; {_FIX}")
    if obj.external:
        files = ", ".join(sorted({str(name) for name, _, _ in obj.external}))
        raise DataError(f"{path}: dataset {key!r} keeps its bytes in external file(s) {files}; {_FIX}")
    if not obj.is_virtual:
        _check_written(obj, key, path)
    return obj


def _check_written(obj: Any, key: str, path: Path) -> None:
    """Refuse a dataset whose declared shape the file does not hold: HDF5 reads chunks (or
    contiguous storage) that were never written as the fill value, so a 5 KB file declaring
    10^9 tiles would train on blank images, or its labels allocate gigabytes of zeros."""
    import math

    shape = tuple(int(s) for s in (obj.shape or ()))
    declared = math.prod(shape) * obj.dtype.itemsize
    if declared == 0:
        return
    try:
        if obj.chunks is None:
            stored, total = obj.id.get_storage_size(), declared
            if stored >= declared:
                return
            what = f"only {stored:,} of its {declared:,} bytes are stored"
        else:
            total = math.prod(math.ceil(s / c) for s, c in zip(shape, obj.chunks))
            written = obj.id.get_num_chunks()
            if written >= total:
                return
            what = f"only {written:,} of its {total:,} chunks were ever written"
    except (AttributeError, RuntimeError, OSError):  # an old HDF5 without the query: nothing to check
        return
    raise DataError(f"{path}: dataset {key!r} declares shape {shape} ({declared / 1e9:,.3g} GB) but {what}; the "
                    "rest would read as blank fill values. The file is damaged, truncated or was never filled: "
                    "write it again")
