"""Fingerprints and provenance records."""

from __future__ import annotations

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
