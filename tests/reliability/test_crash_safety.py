"""SIGKILL `medssl pretrain` at seeded random points, mid-checkpoint-write included, resume
each time with --resume, and check that no checkpoint on disk is ever half-written and that
the final weights and support set equal those of an uninterrupted run bit for bit.

SIGKILL cannot be caught, so this is the worst case for the run directory: nothing is
flushed or cleaned up by the dying process. Kill points are found by polling the run
directory (no test hooks in the package). The killed runs are forked from a process that
has already imported medssl (``zygote.py``) and run ``medssl.cli.main`` -- what
``python -m medssl`` runs -- to save the seconds of import per start; the final resume is a
plain ``python -m medssl pretrain --resume``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import torch

from medssl.checkpoint_io import load_checkpoint
from medssl.train.config import load_pretrain_config
from medssl.train.loop import pretrain

from pretrain_helpers import trained_state
from tests.reliability.harness import CHILD_ENV, assert_clean_cli_error, run_cli, spawn_medssl, tiny_cfg, write_yaml

MAX_STEPS = 10
PLAN = ("config", "tmp", "delay", "tmp", "delay")
ZYGOTE = Path(__file__).with_name("zygote.py")
pytestmark = pytest.mark.timeout(240)


def _checkpoints(run: Path) -> List[Path]:
    d = run / "checkpoints"
    return sorted(d.glob("step_*.pt")) if d.is_dir() else []


def _temporaries(run: Path) -> List[Path]:
    d = run / "checkpoints"
    return sorted(d.glob(".step_*.tmp")) if d.is_dir() else []


def _last_step(run: Path) -> int:
    found = _checkpoints(run)
    return int(found[-1].stem.split("_")[1]) if found else 0


def _metrics_steps(run: Path) -> List[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def _trigger(kind: str, run: Path, start_step: int, rng: random.Random) -> Callable[[], bool]:
    """A predicate that turns true at the moment this kill should land.

    config: the run directory holds config.yaml (before any step or checkpoint);
    tmp:    a checkpoint newer than ``start_step`` is being written (its temporary exists);
    delay:  a seeded random 0-0.3 s after a checkpoint newer than ``start_step`` appeared.
    """
    if kind == "config":
        return lambda: (run / "config.yaml").is_file()
    if kind == "tmp":
        def writing() -> bool:
            return any(int(p.name.split("_")[1].split(".")[0]) > start_step for p in _temporaries(run))

        return writing
    delay = rng.uniform(0.0, 0.3)
    seen: Dict[str, float] = {}

    def after_delay() -> bool:
        if "t" not in seen and _last_step(run) > start_step:
            seen["t"] = time.monotonic()
        return "t" in seen and time.monotonic() - seen["t"] >= delay

    return after_delay


class Zygote:
    """Drives ``zygote.py``: forks pre-imported ``medssl`` CLI processes on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, **CHILD_ENV})
        self.live: Optional[int] = None

    def ready(self) -> None:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "ready", f"zygote failed to start: {line!r}"

    def start(self, argv: List[str], log: Path) -> int:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        kind, pid = self.proc.stdout.readline().split()  # type: ignore[union-attr]
        assert kind == "pid"
        self.live = int(pid)
        return self.live

    def ended(self, timeout: float = 0.0) -> Optional[int]:
        """The child's exit status once it ended (negative: killed by that signal), else None."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        kind, _, code = self.proc.stdout.readline().split()  # type: ignore[union-attr]
        assert kind == "exit"
        self.live = None
        return int(code)

    def close(self) -> None:
        if self.live is not None:  # a failed assertion left a child running
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.live, signal.SIGKILL)
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _kill_when(zygote: Zygote, pid: int, ready: Callable[[], bool], timeout: float = 90.0) -> bool:
    """Poll ``ready`` every ~1 ms and SIGKILL the child when it holds; False if the child
    ended first."""
    deadline = time.monotonic() + timeout
    while True:
        code = zygote.ended()
        if code is not None:
            assert code == 0, f"child failed with status {code}"
            return False
        if ready():
            os.kill(pid, signal.SIGKILL)
            assert zygote.ended(timeout=30) == -signal.SIGKILL
            return True
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.001)


def _assert_every_checkpoint_loads(run: Path) -> None:
    for path in _checkpoints(run):
        state = load_checkpoint(path)  # raises CheckpointError on a torn file
        assert state["step"] == int(path.stem.split("_")[1]), path


def test_sigkill_at_random_points_never_tears_a_checkpoint_and_resume_is_exact(
        sample_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "pnnclr", max_steps=MAX_STEPS, ckpt_every=1, keep_last=2)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", cfg)
    run = tmp_path / "run"

    zygote = Zygote()  # imports medssl while the reference run below trains
    try:
        # The uninterrupted reference, in this process (one thread, like the children: conftest).
        ref = pretrain(load_pretrain_config(data={**cfg, "out_dir": str(tmp_path / "ref")}), progress=False)
        assert ref.steps == MAX_STEPS
        zygote.ready()

        rng = random.Random(20240611)
        kills, torn_writes = 0, 0
        for i, kind in enumerate(PLAN):
            start = _last_step(run)
            pid = zygote.start(["pretrain", str(cfg_path), "--resume", "--no-progress"], tmp_path / f"log{i}.txt")
            if not _kill_when(zygote, pid, _trigger(kind, run, start, rng)):
                break  # finished before this kill point: nothing left to interrupt
            kills += 1
            torn_writes += bool(_temporaries(run))
            _assert_every_checkpoint_loads(run)
            if kind == "config":
                assert _checkpoints(run) == []  # killed before the first checkpoint
    finally:
        zygote.close()

    assert kills == len(PLAN)
    assert torn_writes >= 1, "no kill landed while a checkpoint was being written"

    # The last resume is a plain `python -m medssl pretrain --resume`.
    proc = spawn_medssl(["pretrain", str(cfg_path), "--resume", "--no-progress"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "resumed from" in err and "already holds" not in err
    assert _temporaries(run) == []  # leftovers of killed writes are cleaned by the next save
    _assert_every_checkpoint_loads(run)
    assert (run / "encoder.safetensors").is_file()
    assert _metrics_steps(run) == list(range(1, MAX_STEPS + 1))  # no duplicated or missing rows

    expected = trained_state(ref.checkpoint)
    got = trained_state(_checkpoints(run)[-1])
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_run_killed_before_its_first_checkpoint_starts_afresh(sample_dir: Path, tmp_path: Path) -> None:
    """A directory with config.yaml and torn metrics but no checkpoint: `--resume` (auto)
    starts from step 0 and rewrites the metrics; plain `pretrain` is not refused either
    (there is no run to protect); `train.resume=true` says there is nothing to resume."""
    run = tmp_path / "run"
    cfg_path = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, run, "simclr", max_steps=2))
    run.mkdir()
    (run / "config.yaml").write_text(cfg_path.read_text())
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "lo')  # torn last row
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".step_00000002.pt.abc123.tmp").write_bytes(b"half a checkpoint")

    rc, _, err = run_cli(["pretrain", str(cfg_path), "train.resume=true", "--no-progress"])
    assert_clean_cli_error(rc, err, r"train.resume is true but .*checkpoints holds no checkpoint")

    rc, _, err = run_cli(["pretrain", str(cfg_path), "--resume", "--no-progress"])
    assert rc == 0, err
    assert "resumed from" not in err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["loss"] != 9.0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000002.pt"]


def test_resume_with_a_different_model_is_refused(sample_dir: Path, tmp_path: Path) -> None:
    """Resuming with a different model than the checkpoint's is refused with the cause."""
    run = tmp_path / "run"
    cfg = tiny_cfg(sample_dir, run, "simclr", max_steps=2, ckpt_every=1)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", cfg)
    rc, _, err = run_cli(["pretrain", str(cfg_path), "train.max_steps=1", "--no-progress"])
    assert rc == 0, err
    rc, _, err = run_cli(["pretrain", str(cfg_path), "--resume", "model.proj_dim=8", "--no-progress"])
    assert_clean_cli_error(rc, err, r"cannot resume .*model\.proj_dim: 16 -> 8.*config\.yaml")


@pytest.mark.parametrize("failure,message", [
    (OSError(errno.ENOSPC, "No space left on device"), r"disk full \(No space left on device; \d+ MB free"),
    # anything without the errno is reported as it is, never guessed to be a full disk (a
    # DataLoader worker killed by a group SIGTERM once surfaced inside torch.save like this)
    (RuntimeError("DataLoader worker (pid 4242) is killed by signal: Terminated."),
     r"the write failed \(RuntimeError: DataLoader worker \(pid 4242\) is killed by signal: Terminated\.; \d+ MB"),
])
def test_a_failed_checkpoint_write_is_our_error_and_keeps_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception, message: str) -> None:
    """A disk that fills up mid-write: CheckpointError naming the file and the cause; the
    previous checkpoint and no temporary remain."""
    from medssl.checkpoint_io import CheckpointError, save_checkpoint

    path = save_checkpoint({"v": torch.tensor(1)}, tmp_path / "c.pt")

    def disk_full(obj: object, f: object, *a: object, **kw: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]  # checkpoints are written through a file object
        raise failure

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*c\.pt: " + message
                       + r".*the previous checkpoint is intact"):
        save_checkpoint({"v": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert int(load_checkpoint(path)["v"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_disk_full_during_a_run_stops_it_with_one_line_and_keeps_the_last_checkpoint(
        tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The third checkpoint write fails as torch reports a full disk: `medssl pretrain`
    exits 2 with one line saying so, the step-2 checkpoint loads, and --resume continues."""
    real_save = torch.save
    calls = {"n": 0}

    def fills_up(obj: object, f: object, *a: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"partial")  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *a, **kw)

    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=6,
                                                     ckpt_every=2))
    monkeypatch.setattr(torch, "save", fills_up)
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert_clean_cli_error(rc, err, r"cannot write checkpoint .*step_00000004\.pt: disk full \(No space left "
                                    r"on device.*--resume")
    monkeypatch.undo()
    ckpts = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["step_00000002.pt"]
    assert load_checkpoint(ckpts[0])["step"] == 2
    assert not (tmp_path / "run" / "encoder.safetensors").exists()
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", "--resume"])
    assert rc == 0, err
    assert "resumed from" in err and (tmp_path / "run" / "encoder.safetensors").is_file()
