"""scripts/bench_radiology.py runs in its --smoke setting, and every contender makes the
same pixels as medssl (a benchmark of readers that disagree would compare nothing)."""

from __future__ import annotations

import pytest

from tests.scripts.test_benchmarks_smoke import load_script, number, table_rows

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")


def test_bench_radiology_smoke_agrees_with_medssl(monkeypatch):
    monkeypatch.setenv("MEDSSL_ID_SALT", "bench-radiology-salt-not-secret")
    text = load_script("bench_radiology").main(["--smoke"])
    dicom = table_rows(text, "reader")
    assert [r[0] for r in dicom] == ["medssl", "pydicom loop", "MONAI LoadImage (PydicomReader)"]
    assert all(r[2] == "4" and r[3] == "0" and number(r[1]) > 0 for r in dicom)
    nifti = table_rows(text.split("NIfTI:")[1], "reader")
    assert all(r[2] == "50" and r[3] == "0" for r in nifti)
