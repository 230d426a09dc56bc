"""scripts/quality_purity.py: purity curves read from cached bench_quality runs."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture()
def qp():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        yield importlib.import_module("quality_purity")
    finally:
        sys.path.remove(str(REPO / "scripts"))


def _cache_run(qp, cache: Path, data: Path, row_name: str, purity: list) -> None:
    bq = qp.bq
    row = next(r for r in bq.PLANS["ablate-recipe"] if r.name == row_name)
    (_, run), = list(bq.runs_of([row], "bloodmnist", str(data), [100], [0], 128, "resnet18", 28))
    done = cache / run.key()
    (done / "run").mkdir(parents=True)
    (done / "train.json").write_text("{}")
    lines = [{"step": 1, "loss": 5.0}] + [{"step": 5 * (i + 1), "loss": 5.0, "nn_purity": p} for i, p in enumerate(purity)]
    (done / "run" / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_curves_come_from_the_cached_metrics_and_missing_rows_are_named(qp, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    data = tmp_path / "bloodmnist.npz"
    data.write_bytes(b"x" * 10)
    cache = tmp_path / "cache"
    _cache_run(qp, cache, data, "nnclr + recipe", [0.25, 0.3, 0.4])
    out = tmp_path / "fig" / "purity.png"
    assert qp.main(["--cache", str(cache), "--rows", "nnclr + recipe", "pnnclr + recipe", "--data", str(data),
                    "--out", str(out)]) == 0
    curves = json.loads(out.with_suffix(".json").read_text())["curves"]
    assert curves["nnclr + recipe"][0]["steps"] == [5, 10, 15]  # rows without nn_purity are skipped
    assert curves["nnclr + recipe"][0]["purity"] == [0.25, 0.3, 0.4]
    assert curves["pnnclr + recipe"] == [] and out.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "pnnclr + recipe: no cached run" in printed and "0.250 at step 5 -> 0.400 at step 15" in printed


def test_unknown_row_is_a_clear_error(qp, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no medssl row \\['nope'\\]"):
        qp.purity_curves(tmp_path, "ablate-recipe", ["nope"], 100, [0], str(tmp_path / "x.npz"))
