"""Stop signals during `medssl pretrain`: to the main process or to its whole process group
(DataLoader workers included), a checkpoint, one line, status 128 + N; --resume continues."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Tuple

import pytest
import torch
import yaml

from medssl.checkpoint_io import load_checkpoint
from medssl.train.config import load_pretrain_config
from medssl.train.loop import pretrain
from medssl.train.signals import exit_status, protect_worker, shutdown_workers, signal_name, workers_start_protected
from pretrain_helpers import tiny_cfg, trained_state, wait_for_rows


def _rows(path: Path) -> list:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_checkpoint_then_resume_finishes(sample_dir: Path, tmp_path: Path, sig: int) -> None:
    run = tmp_path / "run"
    cfg = tiny_cfg(sample_dir, run, "nnclr", max_steps=500, num_workers=2, ckpt_every=1000)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "medssl", "pretrain", str(path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_rows(proc, run / "metrics.jsonl", 2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err  # checkpointed but not finished: "resume me"
    assert f"stopped by signal {signal.Signals(sig).name} ({sig}) at step" in err
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert len(ckpts) == 1
    step = load_checkpoint(ckpts[0])["step"]
    assert 2 <= step < 500 and not (run / "encoder.safetensors").exists()

    res = subprocess.run([sys.executable, "-m", "medssl", "pretrain", str(path), "--resume", "--no-progress",
                          f"train.max_steps={step + 2}"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"resumed from {ckpts[0]} at step {step}" in res.stderr
    assert (run / "encoder.safetensors").is_file()
    assert [r["step"] for r in _rows(run / "metrics.jsonl")] == list(range(1, step + 3))


# ------------------------------------------------------------------ signals to the whole group
class _Pids(torch.utils.data.Dataset):
    """Item i: (the worker's pid, i), a little slowly, so signals land mid-epoch."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> Tuple[int, int]:
        time.sleep(0.1)  # the workers are still busy when the signals arrive
        return os.getpid(), i


def _kill_from_outside(pid: int, sig: int) -> None:
    # from another process, as a scheduler would (a signal from the parent means "exit")
    subprocess.run(["kill", f"-{signal.Signals(sig).name[3:]}", str(pid)], check=True)


def _loader(init: Any) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(_Pids(), batch_size=2, num_workers=2, persistent_workers=True,
                                       worker_init_fn=init)


def test_protected_workers_ignore_outside_signals_and_the_loop_ends_them() -> None:
    loader = _loader(protect_worker)
    with workers_start_protected():
        batches = iter(loader)
    pids, seen = set(), []
    first = next(batches)
    for pid in {int(p) for p in first[0]}:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            _kill_from_outside(pid, sig)
    for pid_batch, idx in [first, *batches]:
        pids.update(int(p) for p in pid_batch)
        seen.extend(int(i) for i in idx)
    assert sorted(seen) == list(range(24)) and len(pids) == 2  # the same two workers served it all
    assert all(Path(f"/proc/{p}").exists() for p in pids)
    shutdown_workers(loader)  # torch's shutdown: a message, a join, its terminate() if needed
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    assert loader._iterator is None


_UNPROTECTED = """
import subprocess, time, torch
class Slow(torch.utils.data.Dataset):
    def __len__(self): return 24
    def __getitem__(self, i):
        time.sleep(0.1)
        import os; return os.getpid(), i
loader = torch.utils.data.DataLoader(Slow(), batch_size=2, num_workers=2, persistent_workers=True)
try:
    batches = iter(loader)
    pid = int(next(batches)[0][0])
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    for _ in batches:
        time.sleep(0.02)
    print("no error")
except RuntimeError as exc:
    print("RuntimeError:", exc)
"""


def test_without_protection_a_worker_dies_of_an_outside_sigterm() -> None:
    """The failure protect_worker prevents (what a group SIGTERM did to training), in a child
    process: torch raises it from its SIGCHLD handler wherever the main process is."""
    res = subprocess.run([sys.executable, "-c", _UNPROTECTED], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    # torch reports it in more than one way ("is killed by signal: Terminated", "exited
    # unexpectedly", a reset connection while it tears down): never a normal end
    assert "no error" not in res.stdout, res.stdout + res.stderr
    assert re.search(r"DataLoader worker|ConnectionResetError", res.stdout + res.stderr), res.stdout + res.stderr


REPO = Path(__file__).resolve().parents[2]


def test_group_sigterm_between_checkpoints_then_resume_is_bitwise(sample_dir: Path, tmp_path: Path) -> None:
    """The demo config with two DataLoader workers and no checkpoint due, `kill -TERM -PGID`
    (Slurm at the time limit, docker stop, Kubernetes) at step 3 or later: one line,
    status 143, one loadable checkpoint of the step it stopped at; the printed resume
    command finishes the run bitwise equal to an uninterrupted one."""
    run = tmp_path / "run"
    overrides = [f"data.root={sample_dir / 'pcam'}", f"val_data.root={sample_dir / 'pcam'}", "train.epochs=3",
                 "train.num_workers=2", "train.ckpt_every=1000", "train.device=cpu", "train.deterministic=true",
                 "model.backbone=test_resnet",  # the demo's resnet18 is ~20x slower, and not the point here
                 "train.amp=off",  # one precision for both runs, whatever the bf16 probe would measure
                 "train.threads=1"]  # and one thread count: the in-process reference would take the suite's
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    demo = str(REPO / "configs" / "demo.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "medssl", "pretrain", demo, f"out_dir={run}", *overrides,
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        wait_for_rows(proc, run / "metrics.jsonl", 3)
        os.killpg(proc.pid, signal.SIGTERM)  # the main process and both workers
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "disk full" not in err and "DataLoader worker (pid" not in err, err
    stops = [ln for ln in err.splitlines() if ln.startswith("medssl: stopped")]
    assert len(stops) == 1, err
    (ckpt,) = sorted((run / "checkpoints").glob("step_*.pt"))
    step = load_checkpoint(ckpt)["step"]
    assert 3 <= step < 9
    resume_cmd = f"medssl pretrain {run / 'config.yaml'} --resume"
    assert stops[0].startswith(f"medssl: stopped by signal SIGTERM (15) at step {step}; checkpoint {ckpt}; "
                               f"resume with: {resume_cmd}"), stops[0]

    res = subprocess.run([sys.executable, "-m", *resume_cmd.split(), "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"resumed from {ckpt} at step {step}" in res.stderr
    ref = pretrain(load_pretrain_config(demo, [f"out_dir={tmp_path / 'ref'}", *overrides, "train.num_workers=0"]),
                   progress=False)
    assert ref.steps == 9
    expected, got = trained_state(ref.checkpoint), trained_state(run / "checkpoints" / "step_00000009.pt")
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_signal_names_and_exit_statuses() -> None:
    assert [signal_name(s) for s in (15, 2, 10)] == ["SIGTERM", "SIGINT", "SIGUSR1"]
    assert [exit_status(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)] == [143, 130, 138]


# ------------------------------------------------------------------ a signal at each point of a run
def _signal_self_inside(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, sig: int = signal.SIGTERM) -> None:
    """Make ``module.name`` receive ``sig`` while it runs (as a scheduler's signal would land)."""
    real = getattr(module, name)

    def signalled(*a: Any, **kw: Any) -> Any:
        os.kill(os.getpid(), sig)
        return real(*a, **kw)

    monkeypatch.setattr(module, name, signalled)


def _tiny(sample_dir: Path, tmp_path: Path, **train: Any) -> Any:
    return load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "run", "simclr", device="cpu",
                                              **{"max_steps": 4, "ckpt_every": 100, **train}))


def test_a_signal_during_start_up_stops_before_training_and_writes_no_checkpoint(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import medssl.train.loop as loop

    _signal_self_inside(monkeypatch, loop, "build_model")  # while the model is built
    result = pretrain(_tiny(sample_dir, tmp_path), progress=False)
    assert result.stop_signal == signal.SIGTERM and result.steps == 0 and result.checkpoint is None
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert "stopped by signal SIGTERM (15) at step 0; no checkpoint yet" in capsys.readouterr().err


def test_a_signal_during_the_knn_monitor_stops_after_that_step(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medssl.train.monitor import KNNMonitor

    _signal_self_inside(monkeypatch, KNNMonitor, "__call__", signal.SIGUSR1)
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", device="cpu", max_steps=6, ckpt_every=100, knn_every=2,
                   knn_k=3)
    cfg["val_data"] = dict(cfg["data"], split="val")
    result = pretrain(load_pretrain_config(data=cfg), progress=False)
    assert result.stop_signal == signal.SIGUSR1 and result.steps == 2
    assert load_checkpoint(result.checkpoint)["step"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_00000002.pt"]


def test_a_signal_during_the_export_lets_the_finished_run_finish(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import medssl.train.loop as loop

    _signal_self_inside(monkeypatch, loop, "export_encoder")
    result = pretrain(_tiny(sample_dir, tmp_path, max_steps=2), progress=False)
    assert result.stop_signal is None and result.steps == 2 and result.encoder is not None
    assert result.encoder.is_file() and "stopped by signal" not in capsys.readouterr().err
