"""The on-disk ``.npy`` copies that let a MedMNIST split be memory-mapped.

numpy cannot memory-map an array inside an ``.npz``, so the split's images are streamed
once into ``{stem}.{split}_images.{key}.npy`` (written atomically), where ``key`` names the
npz member's *content* (see the package docstring, "Large sizes"); copies of other keys
for the same split are deleted when a new one is made.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from medssl.errors import DataError
from medssl.fileio import atomic_write
from medssl.provenance import head_tail_sha256

MMAP_MIN_SIZE = 128  # auto-mmap from this image height on (a 128 px PathMNIST train split is ~4.4 GB)


def npz_member_shape(zf: zipfile.ZipFile, key: str) -> Optional[Tuple[int, ...]]:
    """Shape of ``key`` from its .npy header without decompressing the array."""
    with zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)[0]
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)[0]
    return None


def check_member_size(zf: zipfile.ZipFile, key: str, source: Path, in_memory: bool) -> None:
    """Refuse ``key.npy`` before it is read when its header declares more bytes than the
    archive holds for it (a damaged or crafted file: 5 KB declaring 10^9 images), or, when
    it is to be read into memory, more than the machine has; the error names the file, the
    key, the declared shape and both sizes."""
    from medssl.memory import check_allocation

    info = zf.getinfo(f"{key}.npy")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        header = f.tell()
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = info.file_size - header
    where = f"{source} [{key}]"
    if declared > held:
        raise DataError(f"{where}: its header declares shape {tuple(shape)} of {dtype} ({declared / 1e9:,.3g} GB) but "
                        f"the archive holds {max(held, 0):,} bytes for it; the file is damaged or was not written by "
                        "numpy. Download or write it again")
    if in_memory:
        check_allocation(declared, f"{where} (shape {tuple(shape)} {dtype}) in memory",
                         "set mmap: true in the dataset config to read it from disk")


def _copy_member(zf: zipfile.ZipFile, key: str, dest: Path) -> None:
    """Stream ``key.npy`` out of the archive into ``dest`` atomically (temp file + rename)."""
    def copy(tmp: Path) -> None:
        with open(tmp, "wb") as out, zf.open(f"{key}.npy") as src:
            shutil.copyfileobj(src, out, length=16 << 20)

    atomic_write(dest, copy)


def _source_key(npz: Path, zf: zipfile.ZipFile, key: str) -> str:
    """16 hex digits naming the content of member ``key`` of ``npz`` (see "Large sizes")."""
    member = zf.getinfo(f"{key}.npy")
    body = f"{head_tail_sha256(npz)}:{member.filename}:{member.CRC:08x}:{member.file_size}"
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _remove_stale_copies(keep: Path, prefix: str) -> None:
    """Delete the other ``{prefix}.*.npy`` copies (made from an earlier npz) and the
    un-keyed ``{prefix}.npy`` of medssl <= 0.1.0; a reader that still has one open keeps it."""
    pattern = re.compile(re.escape(prefix) + r"(\.[0-9a-f]{16})?\.npy$")
    for p in keep.parent.iterdir():
        if p != keep and pattern.fullmatch(p.name):
            try:
                p.unlink()
            except OSError:
                pass  # another process removed it, or no permission: the key still protects readers



def ensure_npy_copy(npz: Path, zf: zipfile.ZipFile, key: str, cache_dir: Optional[Path]) -> Path:
    """The ``.npy`` copy of member ``key`` of ``npz`` (open as ``zf``) in ``cache_dir``
    (default: next to the npz), made now if it is missing or damaged."""
    base = cache_dir if cache_dir is not None else npz.parent
    dest = base / f"{npz.stem}.{key}.{_source_key(npz, zf, key)}.npy"
    if dest.is_file():
        try:
            cached = np.load(dest, mmap_mode="r")
            if cached.shape == npz_member_shape(zf, key) and cached.dtype == np.uint8:
                return dest
        except (ValueError, OSError):
            pass  # damaged copy: rewrite it below
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # reported just below
    if not os.access(dest.parent, os.W_OK):
        raise DataError(
            f"{npz}: memory-mapping needs a .npy copy of '{key}' but {dest.parent} is not writable; "
            "pass 'cache_dir' pointing at a writable directory (or mmap: false to load into RAM)"
        )
    try:
        _copy_member(zf, key, dest)
    except OSError as exc:
        raise DataError(f"{npz}: could not write the memory-map copy {dest}: {exc}; pass another 'cache_dir'") from exc
    _remove_stale_copies(dest, f"{npz.stem}.{key}")
    return dest
