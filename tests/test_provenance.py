"""Fingerprints and provenance records."""

from __future__ import annotations

import os
from pathlib import Path

from medssl.provenance import content_fingerprint, data_files, data_provenance, file_fingerprint, run_provenance


def test_fingerprints_change_with_content(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 100)
    quick, full = file_fingerprint(f), content_fingerprint(f)
    assert quick["size"] == full["size"] == 100
    f.write_bytes(b"y" * 100)  # same size, other bytes: both fingerprints see it
    assert file_fingerprint(f)["head_tail_sha256"] != quick["head_tail_sha256"]
    assert content_fingerprint(f)["sha256"] != full["sha256"]


def test_data_files_of_a_config_and_the_record(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.png"):
        (tmp_path / "d" / name).write_bytes(name.encode())
    files = data_files({"root": str(tmp_path / "d")})
    assert [p.name for p in files] == ["a.png", "b.png"]
    rec = data_provenance({"root": str(tmp_path / "d")}, {"n": 2})
    assert rec["n_files"] == 2 and len(rec["content_sha256"]) == 64
    (tmp_path / "d" / "a.png").write_bytes(b"changed")
    assert data_provenance({"root": str(tmp_path / "d")}, {"n": 2})["content_sha256"] != rec["content_sha256"]


def test_run_record_holds_config_versions_and_data(tmp_path: Path) -> None:
    f = tmp_path / "x.npz"
    f.write_bytes(b"data")
    rec = run_provenance({"seed": 1}, [{"name": "medmnist", "path": str(f)}, None])
    assert rec["config"] == {"seed": 1} and "torch" in rec["packages"] and "python" in rec["packages"]
    assert [d["path"] for d in rec["data_files"]] == [str(f)]


def test_sha256_file_is_the_hash_of_the_whole_file(tmp_path: Path) -> None:
    import hashlib

    from medssl.provenance import sha256_file

    data = bytes(range(256)) * 9000  # 2.3 MB: several read blocks
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_head_tail_hash_sees_size_head_and_tail_but_not_the_middle(tmp_path: Path) -> None:
    """The documented limit of the cheap hash: used only where a format checksum covers
    the rest (MedMNIST copies) or for records that are not cache keys."""
    from medssl.provenance import HASH_BLOCK, head_tail_sha256

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
