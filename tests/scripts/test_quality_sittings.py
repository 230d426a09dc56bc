"""Long scripts/bench_quality.py runs over several sittings (issue 27): a medssl run stopped
(a signal, ``--stop-after``) or killed (``kill -9``) continues from its last checkpoint on
the next call, ends with the weights of an uninterrupted run, and records its sittings;
budgets in epochs; a curve from encoder snapshots of one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from safetensors.torch import load_file

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_quality  # noqa: E402
import quality_sittings as qs  # noqa: E402

SMOKE_EXTRA = ("model.proj_hidden=64", "model.pred_hidden=64", "model.proj_dim=32", "support_set.size=64")


@pytest.fixture(scope="module")
def bq() -> ModuleType:
    return bench_quality


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.data.sample import write_sample

    root = tmp_path_factory.mktemp("sittings") / "sample_data"
    write_sample(root, seed=0)
    return root / "medmnist" / "ihcstain.npz"


def _run(bq: ModuleType, sample: Path, steps: int, objective: str = "simclr"):
    row = bq.Row(f"medssl {objective}", "medssl", (f"objective.name={objective}",))
    (_, run), = list(bq.runs_of([row], "ihcstain", str(sample), [steps], [0], 16, "test_resnet", 28, SMOKE_EXTRA))
    return run


def _stop_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the training loop receive SIGTERM right after ``step`` (as a signal would)."""
    from medssl.train.loop import Pretrainer

    orig = Pretrainer.train_step

    def train_step(self, batch):
        out = orig(self, batch)
        if self.step == step:
            self._on_signal(signal.SIGTERM, None)
        return out

    monkeypatch.setattr(Pretrainer, "train_step", train_step)


@pytest.mark.slow
def test_a_stopped_run_continues_to_the_weights_of_an_uninterrupted_one(
        bq: ModuleType, sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(bq, sample, 4, "pnnclr")  # EMA target, support set: everything must resume
    cut = bq.Cache(tmp_path / "cut")
    with monkeypatch.context() as m:
        _stop_at(m, 2)
        with pytest.raises(qs.RunStopped, match="stopped at step 2 of 4"):
            cut.train(run, ckpt_every=2)
    progress = cut.progress(run)
    assert progress is not None and progress["steps_done"] == 2 and progress["n_sittings"] == 1
    done = cut.train(run, ckpt_every=2)
    assert done is not None and not (done / "run" / "checkpoints").exists()
    info = json.loads((done / "train.json").read_text())
    assert info["n_sittings"] == 2 and info["steps_done"] == 4
    assert [s["status"] for s in info["sittings"]] == ["stopped", "finished"]
    assert [(s["steps_from"], s["steps_to"]) for s in info["sittings"]] == [(0, 2), (2, 4)]
    assert info["wall_s"] == pytest.approx(sum(s["wall_s"] for s in info["sittings"]))
    assert info["machine"]["cpu"] and info["machine"]["threads"] >= 1 and info["machine"]["torch"]
    assert all(len(s["load_start"]) == 3 and len(s["load_end"]) == 3 for s in info["sittings"])
    whole = bq.Cache(tmp_path / "whole").train(run, ckpt_every=100)
    a, b = load_file(str(done / "run" / "encoder.safetensors")), load_file(str(whole / "run" / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


_KILLABLE = """
import sys
sys.path.insert(0, {scripts!r}); sys.path.insert(0, {tests!r})
from test_quality_sittings import _run
from pathlib import Path
import bench_quality as bq
bq.Cache(Path({cache!r})).train(_run(bq, Path({sample!r}), 400), ckpt_every=2)
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_run_killed_with_sigkill_continues_from_its_last_checkpoint(
        bq: ModuleType, sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    run = _run(bq, sample, 400)
    code = _KILLABLE.format(scripts=str(REPO / "scripts"), tests=str(REPO / "tests" / "scripts"), cache=str(cache),
                            sample=str(sample))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run_dir = cache / f"{run.key()}.partial" / "run"
    deadline = time.monotonic() + 180
    try:
        while (qs.checkpoint_step(run_dir) or 0) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the training process ended before it could be killed"
        assert (qs.checkpoint_step(run_dir) or 0) >= 4
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = qs.checkpoint_step(run_dir)
    assert saved is not None
    # the next call closes the killed sitting at its last checkpoint and continues from there
    _stop_at(monkeypatch, saved + 2)
    with pytest.raises(qs.RunStopped):
        bq.Cache(cache).train(run, ckpt_every=2)
    sittings = json.loads((run_dir.parent / "sittings.json").read_text())
    assert [s["status"] for s in sittings] == ["killed", "stopped"]
    assert sittings[0]["steps_to"] == saved and sittings[1]["steps_from"] == saved
    assert sittings[1]["steps_to"] == saved + 2 and sittings[0]["wall_s"] >= 0


def test_epochs_are_full_batches_of_the_train_split() -> None:
    assert qs.epochs_to_steps([1, 3, 0.5], n_train=11959, batch_size=128) == {93: 1.0, 279: 3.0, 46: 0.5}
    with pytest.raises(SystemExit, match="fewer than one batch"):
        qs.epochs_to_steps([1], n_train=100, batch_size=128)


def test_a_sitting_left_running_by_a_live_process_is_not_closed(tmp_path: Path) -> None:
    s = qs.Sittings(tmp_path)
    s.open(0)  # this process: alive
    qs.Sittings(tmp_path).close_killed(tmp_path / "run")
    assert [x["status"] for x in qs.Sittings(tmp_path).items] == ["running"]


@pytest.mark.slow
def test_epoch_budgets_and_a_curve_from_snapshots_of_one_run(bq: ModuleType, sample: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    (cache / "sample_data").parent.mkdir(parents=True)
    (cache / "sample_data").symlink_to(sample.parents[1])
    base = ["--smoke", "--plan", "table", "--rows", "medssl simclr", "--cache", str(cache), "--n-boot", "20"]
    # 540 train images at batch 16: 33 steps an epoch; 0.06 / 0.12 epochs = 2 / 4 steps
    report = bq.run_plan(bq.parse_args([*base, "--epochs", "0.06", "0.12", "--curve-from-checkpoints"]),
                         log=lambda s: None)
    assert report["budgets"] == [{"steps": 2, "epochs": 0.06}, {"steps": 4, "epochs": 0.12}]
    assert "snapshots of the 4-step run" in report["schedule"]
    entries = {e["steps"]: e for e in report["runs"]}
    assert entries[2]["snapshot"] and not entries[4]["snapshot"] and entries[2]["run"]["steps"] == 4
    assert report["tables"]["2"]["medssl simclr"]["n"] == 1 and report["tables"]["4"]["medssl simclr"]["n"] == 1
    assert entries[2]["eval"] != entries[4]["eval"]
    assert len([d for d in cache.iterdir() if (d / "train.json").is_file()]) == 1  # one run trained
    assert "(0.06 epochs)" in bq.markdown(report)


@pytest.mark.slow
def test_the_report_shows_a_run_in_progress(bq: ModuleType, sample: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "sample_data").symlink_to(sample.parents[1])
    args = ["--smoke", "--plan", "table", "--rows", "medssl simclr", "--cache", str(cache), "--steps", "4",
            "--ckpt-every", "2"]
    logs: list = []
    with monkeypatch.context() as m:
        _stop_at(m, 2)
        report = bq.run_plan(bq.parse_args(args), log=logs.append)
    assert any("stopped at step 2" in line for line in logs)
    row = report["tables"]["4"]["medssl simclr"]
    assert row["n"] == 0 and row["in_progress"][0]["steps_done"] == 2
    assert "in progress: seed 0 at step 2 of 4" in bq.markdown(report)


def test_stop_after_sends_sigterm_to_the_training_loop_and_then_forgets_it() -> None:
    got: list = []
    with qs.stop_after(0.05):
        previous = signal.signal(signal.SIGTERM, lambda *_: got.append(1))  # as medssl's loop installs
        try:
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            signal.signal(signal.SIGTERM, previous)
    assert got == [1]
    with qs.stop_after(0.0):  # a SIGTERM after the loop returned only sets a flag: this process lives on
        time.sleep(0.2)
