"""SIGTERM during `medssl pretrain` saves a checkpoint and exits cleanly; --resume continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medssl.checkpoint_io import load_checkpoint
from pretrain_helpers import tiny_cfg


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
        deadline = time.time() + 120
        while len(_rows(run / "metrics.jsonl")) < 2:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "training did not start in time"
            time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by signal" in err
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
