from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from medssl.fileio import atomic_write


def test_written_file_has_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        p = atomic_write(tmp_path / "a" / "f.bin", lambda tmp: tmp.write_bytes(b"x"))
    finally:
        os.umask(old)
    assert p.read_bytes() == b"x"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644  # readable by colleagues, unlike mkstemp's 0600


def test_failure_leaves_no_temporary_and_keeps_old(tmp_path: Path) -> None:
    p = atomic_write(tmp_path / "f.txt", lambda tmp: tmp.write_text("old"))

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, boom)
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["f.txt"]

