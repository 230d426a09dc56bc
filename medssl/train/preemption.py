"""What a pretraining run does once a stop signal has been handled and its checkpoint
written: say so in one line (signal, step, checkpoint, the command that resumes), and on
Slurm's pre-emption warning put the job back in the queue.

``#SBATCH --signal=USR1@120`` makes Slurm send SIGUSR1 two minutes before the time limit
(or before pre-emption). On SIGUSR1, where ``$SLURM_JOB_ID`` is set and ``scontrol`` is on
``PATH``, rank 0 runs ``scontrol requeue JOB`` after the checkpoint is on disk; the
requeued job runs the same script, and ``train.resume: auto`` continues from that
checkpoint (configs/slurm/ and docs/distributed.md). SIGTERM and SIGINT never requeue:
they are also what ``scancel`` and Ctrl-C send.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Mapping, Optional

from medssl.train.signals import signal_name

#: The signal on which a Slurm job is requeued.
REQUEUE_SIGNAL = signal.SIGUSR1


def slurm_job_id(env: Mapping[str, str] = os.environ) -> Optional[str]:
    """The id ``scontrol requeue`` takes: ``ARRAYJOB_TASK`` for an array task, else
    ``$SLURM_JOB_ID``; None outside Slurm."""
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return env.get("SLURM_JOB_ID") or None


def requeue_slurm_job(env: Mapping[str, str] = os.environ, timeout_s: float = 60.0) -> Optional[str]:
    """Run ``scontrol requeue JOB`` if this is a Slurm job and ``scontrol`` exists; a
    one-line account of what happened, or None when there was nothing to do."""
    job = slurm_job_id(env)
    scontrol = shutil.which("scontrol", path=env.get("PATH"))
    if job is None or scontrol is None:
        return None
    try:
        done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`scontrol requeue {job}` failed ({exc}); requeue the job yourself or submit it again"
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split())[:200]
        return (f"`scontrol requeue {job}` failed (exit {done.returncode}: {detail}); is the job submitted with "
                "--requeue? Submit it again to continue")
    return f"Slurm job {job} requeued (`scontrol requeue {job}`); it resumes from this checkpoint when it starts"


def stop_message(signum: int, step: int, checkpoint: Optional[Path], run_dir: Path, world_size: int) -> str:
    """``medssl: stopped by signal SIGTERM (15) at step 3; checkpoint ...; resume with: ...``"""
    resume = f"medssl pretrain {run_dir / 'config.yaml'} --resume"
    if world_size > 1:
        resume = f"torchrun [as before] -m medssl pretrain {run_dir / 'config.yaml'} --resume"
    saved = f"checkpoint {checkpoint}" if checkpoint is not None else "no checkpoint yet (nothing trained)"
    return (f"medssl: stopped by signal {signal_name(signum)} ({int(signum)}) at step {step}; {saved}; "
            f"resume with: {resume} (or the same command with train.resume: auto)")
