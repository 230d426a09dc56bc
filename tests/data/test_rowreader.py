from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from medssl.data.rowreader import RowReader
from medssl.errors import DataError


def test_npy_rows_match_numpy(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, size=(7, 5, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", arr)
    r = RowReader.for_npy(tmp_path / "a.npy")
    for i in (0, 3, 6):
        row = r.read(i)
        np.testing.assert_array_equal(row, arr[i])
        row[:] = 0  # a private copy
    np.testing.assert_array_equal(r.read(3), arr[3])


def test_raw_offset_layout_and_truncation(tmp_path: Path) -> None:
    body = np.arange(2 * 6, dtype=np.uint8).reshape(2, 2, 3)
    (tmp_path / "b.bin").write_bytes(b"HEAD" + body.tobytes())
    r = RowReader(tmp_path / "b.bin", 4, (2, 3), np.uint8)
    np.testing.assert_array_equal(r.read(1), body[1])
    with pytest.raises(DataError, match="file ends before row 2; it is truncated"):
        r.read(2)


def test_fortran_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.asfortranarray(np.zeros((3, 4), np.uint8)))
    with pytest.raises(DataError, match="Fortran-ordered"):
        RowReader.for_npy(tmp_path / "f.npy")


def test_close_is_idempotent_and_owned_by_the_opening_process(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros((2, 2), np.uint8))
    r = RowReader.for_npy(tmp_path / "c.npy")
    assert r.pid == os.getpid() and r.fd is not None
    r.close()
    r.close()
    assert r.fd is None
