"""scripts/bench_quality.py: a ``--smoke`` run trains a medssl row, a lightly row and a random
init, evaluates them with CIs, caches them by spec and reads them back without training;
the cache key tells runs apart and a live lock keeps a second process off a run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import REPO

SCRIPT = REPO / "scripts" / "bench_quality.py"
ROWS = ["medssl simclr", "lightly nnclr", "random init"]


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


def _smoke_args(bq: ModuleType, cache: Path, *extra: str):
    return bq.parse_args(["--smoke", "--plan", "table", "--rows", *ROWS, "--cache", str(cache), *extra])


@pytest.fixture(scope="module")
def smoke(bq: ModuleType, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("quality_cache")
    threads = torch.get_num_threads()
    try:
        report = bq.run_plan(_smoke_args(bq, cache, "--out", str(cache / "report.json")), log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    return cache, report


@pytest.mark.slow
def test_smoke_rows_are_trained_evaluated_and_cached(bq: ModuleType, smoke) -> None:
    cache, report = smoke
    table = report["tables"]["2"]
    assert list(table) == ROWS
    for name in ROWS:
        row = table[name]
        assert row["n"] == 1
        for proto in bq.PROTOCOLS:
            acc = row["accuracy"][proto]
            lo, hi = acc["ci"]
            assert 0.0 <= lo <= acc["mean"] <= hi <= 1.0 and not math.isnan(acc["mean"])
    runs = {e["row"]: e for e in report["runs"]}
    n = [runs["lightly nnclr"]["eval"][p]["n_labels"] for p in ("probe@2%", "probe@10%", "probe@100%")]
    assert n[0] < n[1] < n[2]
    # every finished run is a cache entry named by its key, with the spec that defines it
    for e in runs.values():
        entry = cache / e["key"]
        assert (entry / "train.json").is_file() and (entry / "eval_val_b50.json").is_file()
        assert json.loads((entry / "spec.json").read_text())["seed"] == 0
    assert not list(cache.glob("*.partial")) and not list(cache.glob("*.lock"))
    # the medssl row really ran the shipped config's pretraining (loss logged), the peer its own loop
    assert runs["medssl simclr"]["train"]["diagnostics"]["loss"] > 0
    assert runs["lightly nnclr"]["train"]["last_loss"] > 0
    md = (cache / "report.md").read_text()
    assert all(f"| {name} | 1 |" in md for name in ROWS)


@pytest.mark.slow
def test_rerun_reads_the_cache(bq: ModuleType, smoke, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, first = smoke

    def no_training(*a, **k):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(bq, "train_medssl", no_training)
    monkeypatch.setattr(bq, "train_peer", no_training)
    again = bq.run_plan(_smoke_args(bq, cache), log=lambda s: None)
    assert again["tables"] == first["tables"]
    # the test split is evaluated from the cached encoders, next to the val evaluation
    test = bq.run_plan(_smoke_args(bq, cache, "--split", "test"), log=lambda s: None)
    assert all(test["tables"]["2"][r]["n"] == 1 for r in ROWS)
    assert len(list(cache.glob("*/eval_test_b50.json"))) == len(ROWS)


@pytest.mark.slow
def test_no_train_reports_missing_runs_as_not_run(bq: ModuleType, smoke, tmp_path: Path) -> None:
    cache, _ = smoke
    (tmp_path / "sample_data").symlink_to(cache / "sample_data")
    report = bq.run_plan(_smoke_args(bq, tmp_path, "--no-train"), log=lambda s: None)
    assert all(row["n"] == 0 for row in report["tables"]["2"].values())
    assert "0 (not run yet)" in bq.markdown(report)
    assert not [p for p in tmp_path.iterdir() if p.name != "sample_data"]


@pytest.mark.slow
def test_key_covers_everything_that_defines_a_run(bq: ModuleType, smoke) -> None:
    cache, _ = smoke
    data = str(cache / "sample_data" / "medmnist" / "ihcstain.npz")
    base = bq.Run("medssl", "ihcstain", data, 2, 16, 0, config="configs/bloodmnist.yaml",
                  overrides=("objective.name=simclr",))
    variants = [bq.replace(base, seed=1), bq.replace(base, steps=3), bq.replace(base, batch_size=32),
                bq.replace(base, overrides=("objective.name=nnclr",)), bq.replace(base, kind="lightly_simclr"),
                bq.replace(base, backbone="resnet34")]
    keys = {base.key()} | {v.key() for v in variants}
    assert len(keys) == 1 + len(variants)
    assert bq.replace(base).key() == base.key()


def _config_run(bq: ModuleType, config: Path, *overrides: str):
    data = REPO / "configs" / "demo.yaml"  # any file: the key holds its name and size
    return bq.Run("medssl", "bloodmnist", str(data), 2, 16, 0, config="configs/bloodmnist.yaml",
                  config_file=str(config), overrides=overrides)


def test_key_holds_the_parsed_config_not_its_text(bq: ModuleType, tmp_path: Path) -> None:
    text = (REPO / "configs" / "bloodmnist.yaml").read_text()
    assert "lr: 1.0e-3" in text and "recipe: small-data" in text  # the edits below change something
    config = tmp_path / "bloodmnist.yaml"
    config.write_text(text)
    before = _config_run(bq, config, "objective.name=pnnclr").key()
    config.write_text("# a comment the user edited\n" + text.replace("recipe: small-data", "recipe: small-data  # why"))
    assert _config_run(bq, config, "objective.name=pnnclr").key() == before
    config.write_text(text.replace("lr: 1.0e-3", "lr: 2.0e-3"))
    assert _config_run(bq, config, "objective.name=pnnclr").key() != before


def test_an_entry_keyed_by_the_config_text_is_found(bq: ModuleType, tmp_path: Path) -> None:
    """Entries cached when the key held the config's text (``config_text``) are read back,
    also after a comment changes; one of a different config is not."""
    text = (REPO / "configs" / "bloodmnist.yaml").read_text()
    config = tmp_path / "bloodmnist.yaml"
    config.write_text(text)
    run = _config_run(bq, config, "objective.name=simclr")
    cache = tmp_path / "cache"

    def legacy_entry(config_text: str) -> Path:
        spec = run.spec()
        spec["config_text"] = config_text
        del spec["config_data"]
        d = cache / bq.spec_key(spec)
        d.mkdir(parents=True)
        (d / "spec.json").write_text(json.dumps(spec))
        (d / "train.json").write_text("{}")
        return d

    other = legacy_entry(text.replace("lr: 1.0e-3", "lr: 2.0e-3"))
    assert bq.Cache(cache).trained(run) is None
    old = legacy_entry("# written before the comment below changed\n" + text)
    assert old.name != run.key() and other.name != run.key()
    assert bq.Cache(cache).trained(run) == old
    assert bq.Cache(cache).train(run) == old  # nothing retrained


@pytest.mark.slow
def test_a_live_lock_keeps_a_second_process_off_the_run(bq: ModuleType, smoke, tmp_path: Path) -> None:
    cache, _ = smoke
    run = bq.Run("random", "ihcstain", str(cache / "sample_data" / "medmnist" / "ihcstain.npz"), 2, 16, 7,
                 backbone="test_resnet")
    c = bq.Cache(tmp_path)
    (tmp_path / f"{run.key()}.lock").write_text(str(os.getpid()))  # this process is alive
    assert c.train(run) is None and c.trained(run) is None
    (tmp_path / f"{run.key()}.lock").write_text("999999999")  # no such process: a stale lock
    assert c.train(run) == tmp_path / run.key()
    assert (tmp_path / run.key() / "run" / "encoder.safetensors").is_file()


def test_unknown_row_names_the_plan_rows(bq: ModuleType, tmp_path: Path) -> None:
    args = bq.parse_args(["--smoke", "--plan", "ablate-simclr", "--rows", "medssl simclr", "--cache", str(tmp_path)])
    with pytest.raises(SystemExit, match="no row .*medssl simclr.* in plan 'ablate-simclr'"):
        bq.run_plan(args, log=lambda s: None)


def test_missing_data_file_says_where_it_looked(bq: ModuleType, tmp_path: Path) -> None:
    args = bq.parse_args(["--data-dir", str(tmp_path), "--cache", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="bloodmnist.npz"):
        bq.run_plan(args, log=lambda s: None)


def test_a_stopped_medssl_run_is_not_cached(bq: ModuleType, smoke, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM makes medssl.pretrain return early with a checkpoint: that run is not a result."""
    import medssl

    cache, _ = smoke
    monkeypatch.setattr(medssl, "pretrain", lambda cfg, progress=False: SimpleNamespace(steps=1, last_loss=5.0))
    run = bq.Run("medssl", "ihcstain", str(cache / "sample_data" / "medmnist" / "ihcstain.npz"), 2, 16, 3,
                 backbone="test_resnet", config="configs/bloodmnist.yaml", overrides=("objective.name=simclr",))
    with pytest.raises(bq.RunStopped, match="stopped at step 1 of 2"):
        bq.Cache(tmp_path).train(run)
    assert bq.Cache(tmp_path).trained(run) is None and not list(tmp_path.glob("*.lock"))
    sittings = json.loads((tmp_path / f"{run.key()}.partial" / "sittings.json").read_text())
    assert [s["status"] for s in sittings] == ["stopped"] and sittings[0]["steps_to"] == 1


PLAN_NAMES = ["table", "ablate-simclr", "ablate-recipe", "ablate-nn", "ablate-views", "ablate-tau", "ablate-alpha",
              "ablate-predictor", "ablate-lr", "ablate-nn-lightly", "ablate-aug", "ablate-instance",
              "ablate-on-instance", "ablate-colour", "long", "ablate-long", "precision"]


def test_the_config_check_below_covers_every_plan(bq: ModuleType) -> None:
    assert sorted(bq.PLANS) == sorted(PLAN_NAMES)


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_every_medssl_row_of_a_plan_is_a_valid_config(bq: ModuleType, smoke, plan: str) -> None:
    """A misspelt override would fail hours into a queue; it fails here instead."""
    import medssl

    cache, _ = smoke
    data = str(cache / "sample_data" / "medmnist" / "ihcstain.npz")
    runs = [run for _, run in bq.runs_of(bq.PLANS[plan], "ihcstain", data, [100], [0], 128, "resnet18", 28)]
    assert len({r.key() for r in runs}) == len(runs)  # no two rows train the same thing
    for run in runs:
        if run.kind == "medssl":
            overrides = [f"data={json.dumps(bq.data_spec(run, 'train'))}", "val_data=null", *run.overrides]
            cfg = medssl.load_pretrain_config(run.config_path(), overrides)
            assert cfg.objective["name"] == run.overrides[0].split("=")[1]


def test_cross_validation_scores_every_image_by_a_model_that_never_saw_its_label(bq: ModuleType) -> None:
    """Random labels on unique random features: a fold scored by a probe or kNN fitted on
    itself would be right every time (kNN finds the image itself); out of fold it is chance."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 32)).astype(np.float32)
    y = rng.integers(0, 3, size=300)
    run = bq.Run("random", "pathmnist-1000", "unused.npz", 0, 16, 0)
    ev = bq.evaluate_cv(run, x, y, "multiclass", 3, n_boot=50)
    assert set(ev) == set(bq.PROTOCOLS)
    for proto, m in ev.items():
        assert 0.2 < m["accuracy"] < 0.47, proto  # chance is 1/3
        assert m["folds"] == 5 and m["accuracy_ci"][0] < m["accuracy"] < m["accuracy_ci"][1]
    assert ev["probe@100%"]["n_labels"] == 240 and ev["probe@10%"]["n_labels"] == 24
    # features that carry the label: every protocol finds it out of fold
    x[np.arange(300), y] += 4.0
    ev = bq.evaluate_cv(run, x, y, "multiclass", 3, n_boot=50)
    assert ev["probe@100%"]["accuracy"] > 0.9 and ev["knn@20"]["accuracy"] > 0.9


def test_the_pathmnist_subset_is_cross_validated_only(bq: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "pathmnist_train_first1000.npz").write_bytes(b"")
    args = bq.parse_args(["--dataset", "pathmnist-1000", "--split", "test", "--data-dir", str(tmp_path),
                          "--cache", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match=r"--split test does not fit pathmnist-1000.*--split cv"):
        bq.run_plan(args, log=lambda s: None)
    args = bq.parse_args(["--split", "cv", "--data-dir", str(tmp_path), "--cache", str(tmp_path / "c")])
    (tmp_path / "bloodmnist.npz").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"--split cv does not fit bloodmnist.*--split val or test"):
        bq.run_plan(args, log=lambda s: None)
    run = bq.Run("random", "pathmnist-1000", str(tmp_path / "pathmnist_train_first1000.npz"), 0, 16, 0)
    assert bq.data_spec(run, "train")["flag"] == "pathmnist"
    assert "flag" not in bq.data_spec(bq.Run("random", "bloodmnist", "b.npz", 0, 16, 0), "train")


def test_no_supervised_row_under_cross_validation(bq: ModuleType, tmp_path: Path) -> None:
    # the supervised row trains on every train label; cross-validation scores those same images
    (tmp_path / "pathmnist_train_first1000.npz").write_bytes(b"")
    common = ["--dataset", "pathmnist-1000", "--data-dir", str(tmp_path), "--cache", str(tmp_path / "c"),
              "--no-train"]
    with pytest.raises(SystemExit, match="supervised row trains on all their labels"):
        bq.run_plan(bq.parse_args(common + ["--rows", "supervised", "random init"]), log=lambda s: None)
    said: list = []
    report = bq.run_plan(bq.parse_args(common), log=said.append)
    assert any("no supervised row on pathmnist-1000" in s for s in said)
    rows = {row for table in report["tables"].values() for row in table}
    assert "supervised" not in rows and "random init" in rows


def test_the_subset_opens_with_its_flag(bq: ModuleType) -> None:
    import medssl

    f = REPO.parent / "shared" / "data" / "medmnist" / "pathmnist_train_first1000.npz"
    if not f.is_file():
        pytest.skip(f"{f} not present (../shared/data)")
    ds = medssl.open_dataset(bq.data_spec(bq.Run("random", "pathmnist-1000", str(f), 0, 16, 0), "train"))
    assert len(ds) == 1000 and ds.num_classes == 9


def test_several_seeds_are_summarised_with_a_t_interval_over_seeds(bq: ModuleType) -> None:
    evs = [{"knn@20": {"accuracy": a, "accuracy_ci": [a - 0.01, a + 0.01]}} for a in (0.70, 0.72, 0.74)]
    s = bq.summarise(evs, "knn@20", "accuracy")
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.72) and s["sd"] == pytest.approx(0.02)
    half = 4.302653 * 0.02 / math.sqrt(3)  # t(0.975, 2 d.o.f.)
    assert s["ci"] == pytest.approx([0.72 - half, 0.72 + half], abs=1e-6)
    assert bq.cell(s) == "0.720 ± 0.020 [0.670, 0.770]"
    one = bq.summarise(evs[:1], "knn@20", "accuracy")
    assert one["ci"] == [0.69, 0.71] and "sd" not in one and bq.cell(one) == "0.700 [0.690, 0.710]"


def test_a_gpu_run_is_cached_apart_from_its_cpu_twin(bq: ModuleType, tmp_path: Path) -> None:
    f = tmp_path / "x.npz"
    f.write_bytes(b"0" * 10)
    cpu = bq.Run("random", "x", str(f), 2, 16, 0, backbone="test_resnet")
    gpu = bq.replace(cpu, device="cuda")
    assert "device" not in cpu.spec()  # CPU keys are the ones cached before the option existed
    assert gpu.spec()["device"] == "cuda" and gpu.key() != cpu.key()


def test_a_worker_gets_the_command_without_jobs_out_or_the_old_deadline(bq: ModuleType) -> None:
    argv = ["--plan", "table", "--jobs", "4", "--out=r.json", "--deadline", "100", "--seeds", "0", "1"]
    assert bq.worker_argv(argv, 60.0) == ["--plan", "table", "--seeds", "0", "1", "--deadline", "60", "--worker"]
    assert bq.worker_argv(["--jobs=2"], None) == ["--worker"]


def test_bad_jobs_and_a_missing_gpu_are_refused(bq: ModuleType, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        bq.parse_args(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bq.parse_args(["--device", "cuda"])
        assert "no CUDA device" in capsys.readouterr().err
        assert bq.parse_args(["--device", "cuda", "--no-train"]).device == "cuda"  # reports GPU runs anywhere


@pytest.mark.slow
def test_jobs_share_the_plan_and_train_each_run_once(bq: ModuleType, smoke, tmp_path: Path) -> None:
    cache, _ = smoke
    (tmp_path / "sample_data").symlink_to(cache / "sample_data")
    rows = ["random init", "lightly simclr", "medssl simclr"]
    report = bq.run_plan(bq.parse_args(["--smoke", "--rows", *rows, "--seeds", "0", "1", "--cache", str(tmp_path),
                                        "--jobs", "2"]), log=lambda s: None)
    table = report["tables"]["2"]
    assert [table[r]["n"] for r in rows] == [2, 2, 2]
    entries = [p for p in tmp_path.iterdir() if (p / "train.json").is_file()]
    assert len(entries) == 6  # every (row, seed) once: the workers took turns, none trained a run twice
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.lock"))


@pytest.mark.slow
def test_past_the_deadline_no_run_is_started(bq: ModuleType, smoke, tmp_path: Path) -> None:
    cache, _ = smoke
    (tmp_path / "sample_data").symlink_to(cache / "sample_data")
    report = bq.run_plan(bq.parse_args(["--smoke", "--rows", "random init", "--cache", str(tmp_path),
                                        "--deadline", "0"]), log=lambda s: None)
    assert report["tables"]["2"]["random init"]["n"] == 0
    assert not [p for p in tmp_path.iterdir() if p.name != "sample_data"]


def test_paired_differences_are_taken_seed_by_seed(bq: ModuleType) -> None:
    def run(row: str, seed: int, p2: float, knn: float):
        return {"row": row, "run": {"steps": 100, "seed": seed},
                "eval": {"probe@2%": {"accuracy": p2}, "knn@20": {"accuracy": knn}}}

    # the reference is better by 0.01 on every seed although seeds differ by 0.1: pairing sees it
    runs = [run("ours", s, 0.6 + 0.1 * s, 0.7) for s in range(3)] + [run("ref", s, 0.61 + 0.1 * s, 0.7) for s in range(4)]
    runs.append(run("ours", 9, 0.9, 0.9))  # a seed the reference lacks is left out
    d = bq.paired(runs, "ours", "ref", 100)
    assert d["seeds"] == [0, 1, 2]
    assert d["probe@2%"]["mean"] == pytest.approx(-0.01) and d["probe@2%"]["ci"] == pytest.approx([-0.01, -0.01])
    assert d["knn@20"]["mean"] == pytest.approx(0.0)
    report = {"dataset": "x", "split": "val", "paired_against": "ref", "paired": {"100": {"ours": d}}}
    assert "| ours | 3 | -0.010 [-0.010, -0.010] | +0.000 [+0.000, +0.000] |" in bq.paired_markdown(report)


@pytest.mark.slow
def test_paired_against_must_name_a_row(bq: ModuleType, smoke) -> None:
    cache, _ = smoke
    with pytest.raises(SystemExit, match="not a row of this report"):
        bq.run_plan(_smoke_args(bq, cache, "--no-train", "--paired-against", "nope"), log=lambda s: None)
    report = bq.run_plan(_smoke_args(bq, cache, "--no-train", "--paired-against", "random init"), log=lambda s: None)
    assert report["paired"]["2"]["medssl simclr"]["seeds"] == [0]


@pytest.mark.slow
def test_a_run_that_fails_in_a_worker_is_tried_once_per_call(bq: ModuleType, smoke, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cache, _ = smoke
    (tmp_path / "sample_data").symlink_to(cache / "sample_data")
    calls = []

    def broken(run, out, *_):
        calls.append(run.key())
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(bq, "train_medssl", broken)
    args = ["--smoke", "--rows", "medssl simclr", "--cache", str(tmp_path), "--worker"]
    logs: list = []
    assert bq.run_plan(bq.parse_args(args), log=logs.append) == {}  # a worker goes on, reports nothing
    key = calls[0]
    assert "same device" in (tmp_path / f"{key}.failed").read_text() and any("FAILED" in line for line in logs)
    bq.run_plan(bq.parse_args(args), log=logs.append)  # a second worker of the same call skips it
    assert calls == [key] and not (tmp_path / key).exists()
    # a new --jobs call clears the marker and tries the run again (here: nothing to train it with)
    c = bq.Cache(tmp_path)
    run = next(r for _, r in bq.runs_of(bq.PLANS["table"][:1], "ihcstain", str(cache / "sample_data" / "medmnist" /
                                                                                  "ihcstain.npz"),
                                        [2], [0], 16, "test_resnet", 28,
                                        ("model.proj_hidden=64", "model.pred_hidden=64", "model.proj_dim=32",
                                         "support_set.size=64")))
    assert run.key() == key and c.failure(run) is not None
    c.clear_failure(run)
    assert c.failure(run) is None


def test_colour_histogram_counts_each_channel_and_adds_its_mean_and_std(bq: ModuleType) -> None:
    img = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    img[0, :, :, 0] = [[0, 31], [32, 255]]  # bins 0, 0, 1, 7 of 8 (32 intensities each)
    img[0, :, :, 1] = 128  # all in bin 4
    f = bq.colour_histogram(img)
    assert f.shape == (1, 3 * (8 + 2)) and f.dtype == np.float32
    hist = f[0, :24].reshape(3, 8)
    np.testing.assert_allclose(hist[0], [0.5, 0.25, 0, 0, 0, 0, 0, 0.25])
    np.testing.assert_allclose(hist[1], [0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(hist[2], [1, 0, 0, 0, 0, 0, 0, 0])
    red = np.array([0, 31, 32, 255]) / 255
    np.testing.assert_allclose(f[0, 24:27], [red.mean(), 128 / 255, 0], rtol=1e-6)
    np.testing.assert_allclose(f[0, 27:30], [red.std(), 0, 0], atol=1e-7)
    # gray images: one channel
    assert bq.colour_histogram(img[..., 0]).shape == (1, 10)


def test_colour_histogram_of_many_images_is_each_image_s_own(bq: ModuleType) -> None:
    """Images are processed in chunks; a chunk boundary must not mix images."""
    x = np.random.default_rng(0).integers(0, 256, size=(300, 6, 5, 3), dtype=np.uint8)
    whole = bq.colour_histogram(x)
    for i in (0, 255, 256, 299):
        np.testing.assert_array_equal(whole[i], bq.colour_histogram(x[i:i + 1])[0])


def test_colour_histogram_refuses_what_is_not_uint8_images(bq: ModuleType) -> None:
    with pytest.raises(ValueError, match="uint8"):
        bq.colour_histogram(np.zeros((1, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        bq.colour_histogram(np.zeros((4, 4), dtype=np.uint8))


@pytest.mark.slow
def test_the_colour_histogram_row_is_scored_without_a_network(bq: ModuleType, smoke, tmp_path: Path) -> None:
    cache, _ = smoke
    (tmp_path / "sample_data").symlink_to(cache / "sample_data")
    args = bq.parse_args(["--smoke", "--plan", "table", "--rows", "colour histogram", "--cache", str(tmp_path)])
    report = bq.run_plan(args, log=lambda s: None)
    (run,) = report["runs"]
    entry = tmp_path / run["key"]
    assert not list(entry.rglob("*.safetensors"))  # nothing was trained
    for proto in bq.PROTOCOLS:
        acc = report["tables"]["2"]["colour histogram"]["accuracy"][proto]
        assert 0.0 <= acc["ci"][0] <= acc["mean"] <= acc["ci"][1] <= 1.0


def test_the_peer_recipe_without_colour_keeps_every_pixel_s_colour(bq: ModuleType) -> None:
    torch.manual_seed(0)
    img = torch.empty(3, 28, 28, dtype=torch.uint8)
    img[0], img[1], img[2] = 200, 60, 120  # one colour everywhere: crops and flips cannot change it
    want = (torch.tensor([200, 60, 120]) / 255 - 0.5) / 0.5
    plain = bq.torchvision_recipe(28, colour=False)
    for _ in range(10):
        v = plain(img)
        assert v.shape == (3, 28, 28)
        torch.testing.assert_close(v, want[:, None, None].expand(3, 28, 28), atol=1e-5, rtol=0)
    # lightly's own recipe jitters or drops that colour in most views (p 0.8 + 0.2)
    full = bq.torchvision_recipe(28)
    changed = sum(not torch.allclose(full(img), want[:, None, None].expand(3, 28, 28), atol=1e-3) for _ in range(20))
    assert changed >= 10


@pytest.mark.slow
def test_the_peer_without_colour_is_trained_and_cached_apart(bq: ModuleType, smoke, tmp_path: Path) -> None:
    cache, _ = smoke
    (tmp_path / "sample_data").symlink_to(cache / "sample_data")
    args = bq.parse_args(["--smoke", "--plan", "ablate-colour", "--rows", "lightly simclr, no colour ops",
                          "--cache", str(tmp_path)])
    report = bq.run_plan(args, log=lambda s: None)
    (run,) = report["runs"]
    assert run["run"]["kind"] == "lightly_simclr_no_colour" and run["train"]["last_loss"] > 0
    assert (tmp_path / run["key"] / "run" / "encoder.safetensors").is_file()


def test_same_image_exclusion_is_part_of_a_neighbour_run_key(bq: ModuleType, tmp_path: Path) -> None:
    """Exclusion became the default (issue 27): a neighbour run trained before it (which
    excluded nothing) keeps its key only when the run asks for no exclusion; SimCLR's keys
    do not move."""
    data = tmp_path / "d.npz"
    data.write_bytes(b"x")

    def run(*overrides: str):
        return bq.Run("medssl", "bloodmnist", str(data), 2, 16, 0, config="configs/bloodmnist.yaml",
                      overrides=overrides)

    on = run("objective.name=pnnclr").spec()
    assert on["support_set_exclusion"] == ["same_image"]
    off = run("objective.name=pnnclr", "support_set.exclude_same_image=false").spec()
    assert "support_set_exclusion" not in off
    assert run("objective.name=pnnclr").key() != run("objective.name=pnnclr",
                                                       "support_set.exclude_same_image=false").key()
    assert "support_set_exclusion" not in run("objective.name=simclr").spec()
