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


def test_sha256_file_is_the_hash_of_the_whole_file(tmp_path: Path) -> None:
    import hashlib

    from medssl.fileio import sha256_file

    data = bytes(range(256)) * 9000  # 2.3 MB: several read blocks
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_head_tail_hash_sees_size_head_and_tail_but_not_the_middle(tmp_path: Path) -> None:
    """The documented limit of the cheap hash: used only where a format checksum covers
    the rest (MedMNIST copies) or for records that are not cache keys."""
    from medssl.fileio import HASH_BLOCK, head_tail_sha256

    base = bytearray(os.urandom(3 * HASH_BLOCK))
    p = tmp_path / "f"

    def digest(data: bytes) -> str:
        p.write_bytes(data)
        return head_tail_sha256(p)

    ref = digest(bytes(base))
    for where in (0, len(base) - 1):
        changed = bytearray(base)
        changed[where] ^= 1
        assert digest(bytes(changed)) != ref
    assert digest(bytes(base) + b"\0") != ref
    middle = bytearray(base)
    middle[len(base) // 2] ^= 1
    assert digest(bytes(middle)) == ref
