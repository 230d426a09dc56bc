"""Two processes on one output directory: the second is refused, naming the first's PID.

Before the run-directory lock, two `medssl pretrain` runs started on one out_dir both ran:
one died on a vanished checkpoint, and metrics.jsonl held every step twice. Here a real
`medssl pretrain` child holds the directory while this process tries a second run, and
the child's metrics must hold each step once. A SIGKILLed holder leaving no stale lock is
exercised by the SIGKILL/resume test in test_crash_safety.py and by tests/test_runlock.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.harness import assert_clean_cli_error, run_cli, spawn_medssl, tiny_cfg, write_yaml

pytestmark = [pytest.mark.timeout(300), pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")]


def _wait_for(predicate, proc: "subprocess.Popen[str]", what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the first run ended (status {proc.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_pretrain_on_a_running_out_dir_is_refused(tmp_path: Path, sample_dir: Path) -> None:
    run = tmp_path / "run"
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, run, "simclr", max_steps=100_000,
                                                     ckpt_every=100_000))
    first = spawn_medssl(["pretrain", str(cfg), "--no-progress"])
    try:
        metrics = run / "metrics.jsonl"
        _wait_for(lambda: metrics.is_file() and metrics.stat().st_size > 0, first, "its first logged step")
        rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
        assert_clean_cli_error(rc, err, rf"run \(out_dir\) is in use by another medssl process "
                                        rf"\(pid {first.pid} on .*\); wait for it to finish")
        rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", "--resume"])  # nor can it be resumed
        assert_clean_cli_error(rc, err, rf"in use by another medssl process \(pid {first.pid} ")
    finally:
        first.send_signal(signal.SIGTERM)  # finishes the step, checkpoints, exits 143 ("resume me")
        _, err = first.communicate(timeout=240)
    assert first.returncode == 143, err
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # each step once, in order


HOLDER = """
import sys
from medssl.runlock import RunLock
with RunLock(sys.argv[1], "out"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_transfer_into_a_busy_out_dir_is_refused(tmp_path: Path, sample_dir: Path) -> None:
    out = tmp_path / "eval"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        rc, _, err = run_cli(["transfer", "--encoder", str(tmp_path / "no_encoder_needed"), "--data",
                              str(sample_dir / "medmnist" / "ihcstain.npz"), "--out", str(out), "--no-plots"])
        assert_clean_cli_error(rc, err, rf"eval \(out\) is in use by another medssl process \(pid {holder.pid} ")
        assert sorted(p.name for p in out.iterdir()) == [".medssl.lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
