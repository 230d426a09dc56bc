"""Slurm's pre-emption warning (SIGUSR1): checkpoint, `scontrol requeue`, and the requeued
job's `train.resume: auto` on an empty, a compatible and an incompatible out_dir.

`scontrol` is a fake on PATH that records its arguments: the real one needs a cluster.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import yaml

from medssl.checkpoint_io import load_checkpoint
from medssl.train.config import load_pretrain_config
from medssl.train.loop import Pretrainer
from medssl.train.preemption import requeue_slurm_job, slurm_job_id, stop_message
from pretrain_helpers import tiny_cfg, wait_for_rows


def fake_scontrol(bin_dir: Path, exit_code: int = 0) -> Path:
    """An executable ``scontrol`` that appends its arguments to ``bin_dir/scontrol.log``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "scontrol"
    exe.write_text(f'#!/bin/sh\necho "$@" >> "{bin_dir}/scontrol.log"\n'
                   + ('echo "scontrol: error: Requested operation is presently disabled" >&2\n' if exit_code else "")
                   + f"exit {exit_code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir / "scontrol.log"


def slurm_env(bin_dir: Path, **extra: str) -> Dict[str, str]:
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "SLURM_JOB_ID": "4242", **extra}


def test_requeue_runs_scontrol_with_the_job_id(tmp_path: Path) -> None:
    log = fake_scontrol(tmp_path / "bin")
    said = requeue_slurm_job(slurm_env(tmp_path / "bin"))
    assert log.read_text().splitlines() == ["requeue 4242"]
    assert said is not None and said.startswith("Slurm job 4242 requeued")
    requeue_slurm_job(slurm_env(tmp_path / "bin", SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID="3"))
    assert log.read_text().splitlines()[-1] == "requeue 77_3"  # an array task is requeued by its own id


def test_no_requeue_outside_slurm_or_without_scontrol(tmp_path: Path) -> None:
    log = fake_scontrol(tmp_path / "bin")
    assert requeue_slurm_job({"PATH": str(tmp_path / "bin")}) is None  # no SLURM_JOB_ID
    assert requeue_slurm_job({"PATH": str(tmp_path / "empty"), "SLURM_JOB_ID": "1"}) is None  # no scontrol
    assert not log.exists()
    assert slurm_job_id({}) is None and slurm_job_id({"SLURM_JOB_ID": "9"}) == "9"


def test_a_failed_requeue_says_what_to_do(tmp_path: Path) -> None:
    fake_scontrol(tmp_path / "bin", exit_code=1)
    said = requeue_slurm_job(slurm_env(tmp_path / "bin"))
    assert said is not None
    assert "`scontrol requeue 4242` failed (exit 1: scontrol: error: Requested operation is presently disabled)" in said
    assert "--requeue" in said


def test_stop_message_names_signal_step_checkpoint_and_resume_command(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints" / "step_00000007.pt"
    one = stop_message(signal.SIGUSR1, 7, ckpt, tmp_path, world_size=1)
    assert one == (f"medssl: stopped by signal SIGUSR1 (10) at step 7; checkpoint {ckpt}; resume with: "
                   f"medssl pretrain {tmp_path / 'config.yaml'} --resume (or the same command with train.resume: auto)")
    assert "\n" not in one
    assert "torchrun [as before] -m medssl pretrain" in stop_message(15, 7, ckpt, tmp_path, world_size=4)
    assert "no checkpoint yet" in stop_message(15, 0, None, tmp_path, world_size=1)


def test_sigusr1_under_slurm_checkpoints_requeues_and_the_requeued_job_resumes(
        sample_dir: Path, tmp_path: Path) -> None:
    """The same command serves the first start and the requeue: SIGUSR1 to the job's process
    group -> a checkpoint, `scontrol requeue 4242`, status 138; run again -> resumes there
    and finishes (status 0, no second requeue)."""
    run = tmp_path / "run"
    cfg = tiny_cfg(sample_dir, run, "simclr", max_steps=400, num_workers=2, ckpt_every=1000, device="cpu")
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log = fake_scontrol(tmp_path / "bin")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **slurm_env(tmp_path / "bin")}
    command = [sys.executable, "-m", "medssl", "pretrain", str(cfg_path), "train.resume=auto", "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        wait_for_rows(proc, run / "metrics.jsonl", 2)
        os.killpg(proc.pid, signal.SIGUSR1)  # Slurm signals every process of the step
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 138, err
    (ckpt,) = sorted((run / "checkpoints").glob("step_*.pt"))
    step = load_checkpoint(ckpt)["step"]
    assert f"stopped by signal SIGUSR1 (10) at step {step}; checkpoint {ckpt}" in err
    assert "medssl: Slurm job 4242 requeued (`scontrol requeue 4242`)" in err
    assert log.read_text().splitlines() == ["requeue 4242"]

    again = subprocess.run(command + [f"train.max_steps={step + 2}"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"resumed from {ckpt} at step {step}" in again.stderr
    assert log.read_text().splitlines() == ["requeue 4242"]  # finishing is not a reason to requeue


def test_requeue_path_on_an_empty_out_dir_starts_afresh(sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2, device="cpu",
                                             resume="auto"))
    result = Pretrainer(cfg, progress=False).fit()
    assert result.steps == 2 and result.stop_signal is None
    assert [json.loads(ln)["event"] for ln in (tmp_path / "run" / "history.jsonl").read_text().splitlines()] \
        == ["start"]


def test_requeue_path_on_an_incompatible_out_dir_is_refused_without_requeue(
        sample_dir: Path, tmp_path: Path) -> None:
    """A requeued job whose out_dir holds a run of another config (here another model
    width) stops with one line (status 2) and is not requeued again."""
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=1, device="cpu", resume="auto")
    Pretrainer(load_pretrain_config(data=cfg), progress=False).fit()
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**cfg, "model": {**cfg["model"], "proj_dim": 8}}))
    log = fake_scontrol(tmp_path / "bin")
    env = {**os.environ, "OMP_NUM_THREADS": "1", **slurm_env(tmp_path / "bin")}
    res = subprocess.run([sys.executable, "-m", "medssl", "pretrain", str(other), "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("medssl: error:")]
    assert len(errors) == 1 and "cannot resume" in errors[0] and "model.proj_dim: 16 -> 8" in errors[0]
    assert "Traceback" not in res.stderr and not log.exists()


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("template", ["pretrain_single_node.sbatch", "pretrain_multi_node.sbatch"])
def test_sbatch_templates_launch_torchrun_with_requeue_and_signal_forwarding(template: str, tmp_path: Path) -> None:
    """Each template, run as Slurm would run it (with a fake `srun` and `scontrol`), asks
    for the USR1 warning and requeue, and launches torchrun with train.resume=auto and
    SIGUSR1 forwarded to the ranks."""
    path = REPO / "configs" / "slurm" / template
    text = path.read_text()
    for directive in ("#SBATCH --signal=USR1@120", "#SBATCH --requeue", "#SBATCH --open-mode=append"):
        assert directive in text, directive
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/srun.args"\n'
                                  f'echo "$TORCHELASTIC_SIGNALS_TO_HANDLE" > "{tmp_path}/signals"\n')
    (bin_dir / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && printf "gpu07\\ngpu08\\n"\n')
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "medssl",
           "SLURM_GPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "32", "SLURM_JOB_NUM_NODES": "2",
           "SLURM_JOB_NODELIST": "gpu[07-08]", "OUT_DIR": str(tmp_path / "run")}
    res = subprocess.run(["bash", str(path), "optim.lr=0.1"], capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    args = (tmp_path / "srun.args").read_text().split()
    assert args[:2] == ["--kill-on-bad-exit=1", "torchrun"] and "--nproc_per_node=4" in args
    assert args[args.index("-m"):] == ["-m", "medssl", "pretrain", "configs/pcam.yaml", f"out_dir={tmp_path / 'run'}",
                                        "train.resume=auto", "--no-progress", "optim.lr=0.1"]
    assert "SIGUSR1" in (tmp_path / "signals").read_text().split(",")[-1]
    if "multi" in template:
        assert {"--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu07:29500", "--rdzv-id=4242"} <= set(args)
    else:
        assert "--standalone" in args
