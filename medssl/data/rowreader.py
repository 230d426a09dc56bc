"""Per-item reads from large fixed-layout files without memory maps.

A memory map makes every touched page (and the kernel's read-ahead around it, often
several MiB per fault) count as resident memory of the process; random access over a
multi-GB file then inflates RSS towards the file size. One ``os.pread`` per item puts the
bytes in the page cache instead, so a process's resident memory stays at one item
whatever the file size. Each process opens its own descriptor lazily (fork- and
spawn-safe: :meth:`RowReader.for_process` notices a changed PID).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from medssl.errors import DataError


class RowReader:
    """Row ``i`` of a file whose rows of ``row_shape`` / ``dtype`` start at byte ``offset``."""

    def __init__(self, path: Union[str, Path], offset: int, row_shape: Sequence[int], dtype: np.dtype) -> None:
        self.path = Path(path)
        self.pid = os.getpid()
        self.offset = int(offset)
        self.row_shape: Tuple[int, ...] = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self.fd: Optional[int] = os.open(self.path, os.O_RDONLY)

    @classmethod
    def for_npy(cls, path: Union[str, Path]) -> "RowReader":
        """Rows (first axis) of a C-ordered ``.npy`` file."""
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise DataError(f"{path}: unsupported .npy version {version}; delete the file to rebuild it")
            offset = fh.tell()
        if fortran:
            raise DataError(f"{path}: Fortran-ordered array; delete the file to rebuild it")
        return cls(path, offset, shape[1:], dtype)

    def read(self, index: int) -> np.ndarray:
        """A private, writable copy of row ``index``."""
        assert self.fd is not None
        buf = os.pread(self.fd, self.row_bytes, self.offset + index * self.row_bytes)
        if len(buf) != self.row_bytes:
            raise DataError(f"{self.path}: file ends before row {index}; it is truncated")
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.row_shape).copy()

    def close(self) -> None:
        if self.fd is not None and self.pid == os.getpid():
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = None

    def __del__(self) -> None:
        self.close()
