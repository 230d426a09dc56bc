"""scripts/bench_quality.py: the ``--scale smoke`` run on the embedded sample writes a table
with a row per method, metrics in [0, 1] and CIs around their point estimates; the pure
helpers (seed aggregation, purity summary) compute what they claim."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from conftest import REPO

SCRIPT = REPO / "scripts" / "bench_quality.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_quality", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bq() -> ModuleType:
    return load()


@pytest.fixture(scope="module")
def smoke(bq: ModuleType, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("quality")
    threads = torch.get_num_threads()
    try:
        args = bq.parse_args(["--scale", "smoke", "--out", str(out), "--work", str(out / "work")])
        results = bq.run_benchmark(args, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    return out, results


def _in_unit(v: float) -> bool:
    return v is not None and not math.isnan(v) and 0.0 <= v <= 1.0


@pytest.mark.slow
def test_smoke_table_has_a_row_per_method(bq: ModuleType, smoke) -> None:
    out, results = smoke
    table = (out / "quality_table.md").read_text()
    ds = next(iter(results["datasets"].values()))
    assert "embedded sample" in ds["source"]
    expected = list(bq.SSL_METHODS) + ["random", "supervised"] + (["lightly_nnclr"] if bq.lightly_available() else [])
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    for method in expected:
        assert ds["methods"][method]["status"] == "ok"
        label = bq.METHOD_LABELS[method]
        # one row in the mean +- sd table and one in the seed-0 CI table
        assert sum(r.startswith(f"| {label} |") for r in rows) == 2, label
    if not bq.lightly_available():
        assert "NNCLR (lightly): not run" in table
    # every row carries 2 numbers per protocol
    assert all(r.count("|") == 2 * len(bq.PROTOCOLS) + 2 for r in rows)


@pytest.mark.slow
def test_smoke_metrics_are_probabilities_with_cis(bq: ModuleType, smoke) -> None:
    out, _ = smoke
    results = json.loads((out / "quality_results.json").read_text())
    ds = next(iter(results["datasets"].values()))
    first = str(results["scale"]["seeds"][0])
    for method, entry in ds["methods"].items():
        if entry["status"] != "ok":
            continue
        for proto in bq.PROTOCOLS:
            ev = entry["per_seed"][first][proto]
            for key in ("auc", "top1"):
                assert _in_unit(ev[key]), (method, proto, key, ev[key])
                lo, hi = ev[f"{key}_ci"]
                assert 0.0 <= lo <= ev[key] + 1e-9 and ev[key] - 1e-9 <= hi <= 1.0
                assert _in_unit(entry["aggregate"][proto][key]["mean"])
        # the 2 % / 10 % probes really used fewer labels than the full one
        n = [entry["per_seed"][first][p]["n_labels"] for p in ("linear@2%", "linear@10%", "linear@100%")]
        assert n[0] < n[1] < n[2] == ds["n_train"]
    # what ran is recorded: the SSL configs carry the shared budget
    for method in bq.SSL_METHODS:
        cfg = ds["methods"][method]["runs"][first]["config"]
        assert cfg["train"]["max_steps"] == ds["steps"] and cfg["objective"]["name"] == method
        assert cfg["model"]["backbone"] == results["scale"]["backbone"]
    assert (out / "purity.png").stat().st_size > 0
    assert 0.0 < ds["purity_chance"] <= 1.0
    for method in ("nnclr", "pnnclr"):
        curve = ds["purity_curves"][method][first]
        assert curve and all(_in_unit(v) for _, v in curve)


def test_aggregate_is_mean_and_sample_sd(bq: ModuleType) -> None:
    per_seed = {s: {p: {"auc": a, "top1": a / 2} for p in bq.PROTOCOLS} for s, a in enumerate([0.6, 0.8, 0.7])}
    agg = bq.aggregate(per_seed)
    assert agg["knn@k20"]["auc"]["mean"] == pytest.approx(0.7)
    assert agg["knn@k20"]["auc"]["sd"] == pytest.approx(float(np.std([0.6, 0.8, 0.7], ddof=1)))
    assert agg["linear@2%"]["top1"]["mean"] == pytest.approx(0.35) and agg["linear@2%"]["top1"]["n"] == 3


def test_purity_summary_compares_early_steps(bq: ModuleType) -> None:
    curves = {"nnclr": {0: [(1, 0.2), (2, 0.3), (3, 0.6), (4, 0.7)]},
              "pnnclr": {0: [(1, 0.4), (2, 0.5), (3, 0.5), (4, 0.6)]}}
    s = bq.purity_summary(curves)
    assert s["pnnclr"]["early_mean"] == pytest.approx(0.45) and s["nnclr"]["late_mean"] == pytest.approx(0.65)
    assert s["pnnclr_ahead_early_share"] == {"0": 1.0}


def test_chance_purity_is_sum_of_squared_class_shares(bq: ModuleType) -> None:
    assert bq.chance_purity(np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    assert bq.chance_purity(np.array([[2], [2], [2], [0]])) == pytest.approx(0.75**2 + 0.25**2)


def test_purity_curve_reads_only_logged_rows(bq: ModuleType, tmp_path: Path) -> None:
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.9, "nn_purity": 0.25}, {"step": 4, "nn_purity": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert bq.purity_curve(tmp_path) == [(2, 0.25), (4, 0.5)]
    assert bq.purity_curve(tmp_path / "missing") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_gpu_scale_without_cuda_says_so(bq: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        bq.build_scale(bq.parse_args(["--scale", "gpu", "--out", str(tmp_path)]))
