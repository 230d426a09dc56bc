"""scripts/bench_panel.py runs end to end on the embedded sample and prints its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_benchmarks_smoke import load_script, number, table_rows


@pytest.mark.slow
def test_bench_panel_smoke(sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(sample_dir / "medmnist" / "ihcstain.npz")
    load_script("bench_panel").main(["--data", data, "--fractions", "0.2", "0.5", "--seeds", "1", "--n-boot", "10",
                                     "--protocol", "knn", "--backbone", "test_resnet", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    rows = {r[0]: r for r in table_rows(out, "way")}
    assert set(rows) == {"separate", "one call + extra probes", "panel"}
    assert number(rows["one call + extra probes"][2]) == 1.0 and number(rows["panel"][1]) > 0
    rep = json.loads((tmp_path / "panel" / "report.json").read_text())
    assert len(rep["rows"]) == 2 and {r["point"]["value"] for r in rep["rows"]} == {0.2, 0.5}
    assert (tmp_path / "separate" / "ihcstain_0.5" / "report.json").is_file()
