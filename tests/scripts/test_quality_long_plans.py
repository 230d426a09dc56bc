"""The long-budget plans of issue 27 (``long``, ``ablate-long`` in scripts/quality_plans.py)
and scripts/quality_curves.py: every row is a valid config on every data set's shipped
config, and a tiny smoke run goes through training, snapshots, the curves JSON and figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_quality  # noqa: E402
import quality_curves  # noqa: E402

NEIGHBOURS = ("nnclr", "pnnclr", "snclr", "psm")


@pytest.fixture(scope="module")
def bq() -> ModuleType:
    return bench_quality


@pytest.mark.parametrize("dataset", ["bloodmnist", "pneumoniamnist", "pathmnist-1000"])
@pytest.mark.parametrize("plan", ["long", "ablate-long"])
def test_every_row_is_a_valid_config_on_each_data_set(bq: ModuleType, dataset: str, plan: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import medssl

    monkeypatch.setattr(bq, "train_size", lambda data_file, name: 11959)  # BloodMNIST's train split
    data = str(REPO / "configs" / "demo.yaml")  # any file: only its name and size enter the key
    runs = [run for _, run in bq.runs_of(bq.PLANS[plan], dataset, data, [100], [0], 128, "resnet18", 28)]
    assert len({r.key() for r in runs}) == len(runs)
    for run in runs:
        assert run.config == bq.bench_data(dataset).config  # each data set's shipped config: same views
        overrides = [f"data={json.dumps(bq.data_spec(run, 'train'))}", "val_data=null", *run.overrides]
        cfg = medssl.load_pretrain_config(run.config_path(), overrides)
        assert cfg.objective["name"] == run.overrides[0].split("=")[1]
        assert not any(o.startswith("augment") for o in run.overrides)
        if "neighbour_warmup_steps" in cfg.objective:
            assert cfg.objective["neighbour_warmup_steps"] == 93  # "epochs:1" = 11959 // 128 steps


def test_the_long_plan_has_simclr_and_both_forms_of_every_neighbour_objective(bq: ModuleType) -> None:
    rows = {r.name: r.overrides for r in bq.PLANS["long"]}
    assert rows["medssl simclr"] == ("objective.name=simclr",)
    for m in NEIGHBOURS:
        assert rows[f"medssl {m}"] == (f"objective.name={m}",)
        assert rows[f"{m} (paper form)"] == (f"objective.name={m}", "objective.instance_weight=0.0")
    # the ablation's baseline is the long plan's run (one cache entry for both)
    data = str(REPO / "configs" / "demo.yaml")
    base = next(r for r in bq.PLANS["ablate-long"] if r.name == "medssl pnnclr")
    long_row = next(r for r in bq.PLANS["long"] if r.name == "medssl pnnclr")
    keys = [next(bq.runs_of([r], "bloodmnist", data, [100], [0], 128, "resnet18", 28))[1].key()
            for r in (base, long_row)]
    assert keys[0] == keys[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_smoke_long_run_gives_curves_with_paired_intervals(bq: ModuleType, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = bq.parse_args(["--smoke", "--plan", "long", "--rows", "medssl simclr", "pnnclr (paper form)",
                          "--steps", "2", "4", "--curve-from-checkpoints", "--seeds", "0", "1", "--cache", str(cache),
                          "--n-boot", "20", "--paired-against", "medssl simclr"])
    report = bq.run_plan(args, log=lambda s: None)
    record = quality_curves.curves(report, cache, "medssl simclr")
    assert record["rows"] == ["medssl simclr", "pnnclr (paper form)"] and record["seeds"] == [0, 1]
    assert [b["steps"] for b in record["budgets"]] == [2, 4]
    for row in record["rows"]:
        for n in ("2", "4"):
            seeds = record["per_seed"][row][n]
            assert sorted(seeds) == ["0", "1"]
            assert all(0.0 <= s["probe@2%"] <= 1.0 and 0.0 <= s["knn@20"] <= 1.0 for s in seeds.values())
    assert all(s["purity"] is None for s in record["per_seed"]["medssl simclr"]["4"].values())
    assert all(s["purity"] is not None for s in record["per_seed"]["pnnclr (paper form)"]["4"].values())
    paired = record["paired"]["pnnclr (paper form)"]["4"]
    assert paired["seeds"] == [0, 1] and len(paired["probe@2%"]["ci"]) == 2
    mean = record["summary"]["pnnclr (paper form)"]["4"]["knn@20"]
    assert mean["n"] == 2 and mean["ci"][0] <= mean["mean"] <= mean["ci"][1]
    path = quality_curves.write_record(record, tmp_path / "long.json")
    quality_curves.write_record({**record, "dataset": "other"}, path)  # a second data set is added, not replaced
    assert sorted(json.loads(path.read_text())["datasets"]) == ["ihcstain", "other"]
    figure = quality_curves.draw(record, tmp_path / "long.png")
    assert figure.stat().st_size > 10_000


@pytest.mark.slow
def test_the_warm_up_row_of_the_ablation_trains_on_the_smoke_sample(bq: ModuleType, tmp_path: Path) -> None:
    args = bq.parse_args(["--smoke", "--plan", "ablate-long", "--rows", "pnnclr after 1 epoch of SimCLR",
                          "--cache", str(tmp_path), "--n-boot", "20"])
    report = bq.run_plan(args, log=lambda s: None)
    (entry,) = report["runs"]
    assert entry["eval"] is not None
    assert "objective.neighbour_warmup_steps=33" in entry["run"]["overrides"]  # 540 images // batch 16
    rows = [json.loads(line) for line in (tmp_path / entry["key"] / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r.get("neighbour_warmup") == 1.0 for r in rows if "loss" in r)
