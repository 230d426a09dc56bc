"""Long scripts/bench_quality.py runs trained over several sittings (issue 27).

A medssl run of 10 or 30 epochs takes hours on a shared 2-core CPU. It trains in its cache
entry's ``<key>.partial/run`` directory with a checkpoint every ``--ckpt-every`` steps
(medssl's exact resume: ``train.resume=auto``), so a process stopped at any point -- a
signal, ``--stop-after``, or ``kill -9`` -- continues from the last checkpoint on the next
call. Each sitting is recorded in ``<key>.partial/sittings.json``: when it started and
ended, the steps it began and ended at, the machine (CPU model, threads, torch) and the
load average at both ends. A sitting that was killed (its process is gone, its entry still
"running") is closed on the next call at the time and step of its last checkpoint: the
work after that checkpoint was lost and is not counted.

Budgets may be given in epochs (``--epochs 1 3 10 30``): steps = epochs x full batches
per epoch of the train split.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

SITTINGS_NAME = "sittings.json"
_CKPT = re.compile(r"^step_(\d{8})\.pt$")


class RunStopped(Exception):
    """A run stopped before its last step (a signal or ``--stop-after``); its checkpoint
    stays in the partial cache entry and the next call continues it."""

    def __init__(self, steps_done: int, steps: int) -> None:
        super().__init__(f"stopped at step {steps_done} of {steps}")
        self.steps_done, self.steps = steps_done, steps


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> Dict[str, Any]:
    """What a sitting ran on: host, CPU model and count, torch threads and version."""
    out: Dict[str, Any] = {"host": platform.node(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                           "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "platform": platform.platform()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def checkpoint_step(run_dir: Path) -> Optional[int]:
    """The step of the newest checkpoint in ``run_dir/checkpoints`` (None: there is none)."""
    d = Path(run_dir) / "checkpoints"
    steps = [int(m.group(1)) for p in d.glob("step_*.pt") if (m := _CKPT.match(p.name))] if d.is_dir() else []
    return max(steps) if steps else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Sittings:
    """The sittings of one partial cache entry (``<entry>/sittings.json``, rewritten whole
    and atomically after each change)."""

    def __init__(self, entry: Path) -> None:
        self.path = Path(entry) / SITTINGS_NAME
        self.items: List[Dict[str, Any]] = json.loads(self.path.read_text()) if self.path.is_file() else []

    def _write(self) -> None:
        from medssl.fileio import atomic_write

        atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps(self.items, indent=1)))

    def close_killed(self, run_dir: Path) -> None:
        """Close every sitting left "running" by a process that is gone, at its last
        checkpoint (time and step); one without a checkpoint of its own ends where it began."""
        ckpt = checkpoint_step(run_dir)
        changed = False
        for s in self.items:
            if s["status"] != "running" or _alive(int(s["pid"])):
                continue
            end = s["t_start"]
            steps_to = s["steps_from"]
            if ckpt is not None and ckpt > s["steps_from"]:
                path = Path(run_dir) / "checkpoints" / f"step_{ckpt:08d}.pt"
                end, steps_to = max(end, path.stat().st_mtime), ckpt
            s.update(status="killed", t_end=end, wall_s=end - s["t_start"], steps_to=steps_to, load_end=None)
            changed = True
        if changed:
            self._write()

    def open(self, steps_from: int) -> Dict[str, Any]:
        """Start a sitting at ``steps_from`` (the checkpoint it resumes from, 0 for a fresh run)."""
        s = {"status": "running", "pid": os.getpid(), "start": _now(), "t_start": time.time(),
             "steps_from": int(steps_from), "load_start": list(os.getloadavg()), "machine": machine()}
        self.items.append(s)
        self._write()
        return s

    def close(self, sitting: Dict[str, Any], status: str, steps_to: int) -> None:
        """End ``sitting`` (``finished``, ``stopped`` or ``failed``) at ``steps_to``."""
        t = time.time()
        sitting.update(status=status, end=_now(), t_end=t, wall_s=t - sitting["t_start"], steps_to=int(steps_to),
                       load_end=list(os.getloadavg()))
        self._write()

    def summary(self) -> Dict[str, Any]:
        """Steps done, wall time summed over the sittings, and each sitting's record."""
        done = [s for s in self.items if s["status"] != "running"]
        return {"steps_done": max([s["steps_to"] for s in done], default=0),
                "wall_s": float(sum(s["wall_s"] for s in done)), "n_sittings": len(self.items),
                "sittings": self.items}


@contextlib.contextmanager
def stop_after(seconds: Optional[float]) -> Iterator[None]:
    """Send this process SIGTERM after ``seconds`` (None: never): medssl's training loop then
    finishes the step, writes a checkpoint and returns. A SIGTERM that lands just after
    training returned only sets a flag (it must not kill the process while it caches)."""
    if seconds is None:
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    timer = threading.Timer(max(0.0, seconds), lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per epoch (medssl drops the last partial batch)."""
    return n_train // batch_size


def epochs_to_steps(epochs: Sequence[float], n_train: int, batch_size: int) -> Dict[int, float]:
    """``{steps: epochs}`` for each budget in epochs (at least one step each)."""
    per = steps_per_epoch(n_train, batch_size)
    if per < 1:
        raise SystemExit(f"bench_quality: the train split has {n_train} images, fewer than one batch of {batch_size}")
    return {max(1, int(round(e * per))): float(e) for e in epochs}


# bench_quality's options for budgets in epochs, snapshots and sittings: (flag, argparse keywords)
LONG_RUN_OPTIONS: Tuple[Tuple[str, Dict[str, Any]], ...] = (
    ("--epochs", {"type": float, "nargs": "+", "default": None,
                  "help": "budgets in epochs of the train split instead of --steps (steps = epochs x full batches "
                          "per epoch); each budget is its own run with its own schedule unless "
                          "--curve-from-checkpoints"}),
    ("--curve-from-checkpoints", {"action": "store_true",
                                  "help": "train only the longest budget and evaluate the shorter ones on encoder "
                                          "snapshots of that run (one schedule: the EMA momentum and any warm-up / "
                                          "decay follow the longest run's length, so a snapshot is not the shorter "
                                          "budget's own run)"}),
    ("--ckpt-every", {"type": int, "default": 100,
                      "help": "steps between checkpoints of a medssl run (a stopped or killed run continues from "
                              "the last one on the next call)"}),
    ("--stop-after", {"type": float, "default": None, "metavar": "SECONDS",
                      "help": "stop the run in training after this many seconds of this call, at a checkpoint, "
                              "and start no other (the next call continues it)"}),
)


def add_long_run_arguments(p: argparse.ArgumentParser) -> None:
    """Add :data:`LONG_RUN_OPTIONS` to bench_quality's parser."""
    for flag, keywords in LONG_RUN_OPTIONS:
        p.add_argument(flag, **keywords)
