"""The on-disk tile shard: one HDF5 file of at most ``shard_size`` tiles of one slide.

Layout (the PCAM image layout plus a per-tile table)::

    x     (N, T, T, 3) uint8   RGB tiles, contiguous (no compression: reads are one copy)
    meta  (N,) compound        slide (bytes), level (int16), x, y (int64, level-0 px of the
                               top-left corner), mpp (float32, NaN when unknown),
                               tissue (float32, tissue fraction 0..1)
    attrs format = FORMAT, slide = slide id, tile = T

A shard is written to a temporary file and renamed into place (:func:`medssl.fileio.atomic_write`),
so a shard file that exists is complete; a crash loses at most the shard being written.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable

import numpy as np

from medssl.errors import DataError
from medssl.fileio import atomic_write
from medssl.hdf5 import local_dataset

FORMAT = "medssl-wsi-tiles/1"
SHARD_DIR = "shards"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def meta_dtype(id_bytes: int) -> np.dtype:
    """The ``meta`` table's row type for slide ids of at most ``id_bytes`` UTF-8 bytes."""
    return np.dtype([("slide", f"S{max(1, id_bytes)}"), ("level", "<i2"), ("x", "<i8"), ("y", "<i8"),
                     ("mpp", "<f4"), ("tissue", "<f4")])


def slide_stem(slide_id: str) -> str:
    """A file-name-safe stem for a slide's files: a readable id plus a hash that keeps ids
    differing only in unsafe characters apart."""
    digest = hashlib.sha1(slide_id.encode("utf-8")).hexdigest()[:8]
    safe = _UNSAFE.sub("_", slide_id)[:80] or "slide"
    return f"{safe}-{digest}"


def shard_name(slide_id: str, index: int) -> str:
    """File name of shard ``index`` of a slide."""
    return f"{slide_stem(slide_id)}-{index:05d}.h5"


def write_shard(path: Path, slide_id: str, tile: int, meta: np.ndarray,
                read_tile: Callable[[int], np.ndarray]) -> Path:
    """Write ``len(meta)`` tiles (``read_tile(i)`` -> (tile, tile, 3) uint8) and their meta
    rows to ``path`` atomically; one tile is in memory at a time."""
    import h5py

    n = len(meta)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            x = f.create_dataset("x", shape=(n, tile, tile, 3), dtype=np.uint8, track_times=False)
            for i in range(n):
                img = read_tile(i)
                if img.shape != (tile, tile, 3) or img.dtype != np.uint8:
                    raise DataError(f"shard {path}: tile {i} has shape {img.shape} {img.dtype}, expected "
                                    f"({tile}, {tile}, 3) uint8")
                x[i] = img
            f.create_dataset("meta", data=meta, track_times=False)
            f.attrs.update({"format": FORMAT, "slide": slide_id, "tile": tile})

    return atomic_write(path, write)


def read_meta(path: Path) -> Dict[str, Any]:
    """``{"meta": rows, "n": N, "tile": T, "slide": id}`` of a shard, without reading tiles."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or "x" not in f or "meta" not in f:
                raise DataError(f"{path}: not a medssl tile shard (format {f.attrs.get('format')!r}); "
                                "it does not belong in a tiling's shards/ folder")
            x, meta_ds = local_dataset(f, "x", path), local_dataset(f, "meta", path)
            if x is None or meta_ds is None:
                raise DataError(f"{path}: not a medssl tile shard (no dataset 'x' or 'meta')")
            meta = meta_ds[()]
            if x.ndim != 4 or x.shape[3] != 3 or x.shape[1] != x.shape[2] or len(meta) != x.shape[0]:
                raise DataError(f"{path}: shard holds x {x.shape} and {len(meta)} meta rows; expected "
                                "(N, T, T, 3) and N rows. Delete it and re-run `medssl data tile --resume`")
            return {"meta": meta, "n": int(x.shape[0]), "tile": int(x.shape[1]), "slide": str(f.attrs["slide"])}
    except OSError as exc:
        raise DataError(f"{path}: cannot read the tile shard ({exc}); delete it and re-run "
                        "`medssl data tile --resume` to rewrite it") from exc


def shard_matches(path: Path, expected: np.ndarray) -> bool:
    """True when ``path`` is a readable shard whose meta table equals ``expected``
    (how ``--resume`` tells a finished shard of an unfinished slide)."""
    if not path.is_file():
        return False
    try:
        got = read_meta(path)["meta"]
    except DataError:
        return False
    return len(got) == len(expected) and all(np.array_equal(got[k], expected[k]) for k in ("x", "y", "level", "slide"))


def batched(n: int, size: int) -> Iterable[range]:
    """Consecutive ranges of at most ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield range(start, min(n, start + size))
