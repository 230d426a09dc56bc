"""Shared helpers for the reliability tests (not a test module).

A tiny pretraining config (timm's ``test_resnet`` on the embedded sample at 28 px, CPU,
deterministic), a way to run the ``medssl`` CLI in-process and capture what it prints,
and a way to launch it as a child process.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import yaml

from medssl.cli import main as cli_main
from pretrain_helpers import tiny_cfg as shared_tiny_cfg

CHILD_ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def tiny_cfg(sample_dir: Path, out: Path, objective: str = "pnnclr", **train: Any) -> Dict[str, Any]:
    """The shared tiny config, pinned to the CPU in deterministic mode (exact-resume checks)."""
    return shared_tiny_cfg(sample_dir, out, objective, **{"device": "cpu", "deterministic": True, **train})


def write_yaml(path: Path, cfg: Dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_cli(argv: Sequence[str]) -> Tuple[int, str, str]:
    """``medssl ARGV`` in this process: (exit code, stdout, stderr). Exceptions that are not
    ours propagate (so a bare traceback fails the calling test loudly)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def assert_clean_cli_error(rc: int, err: str, pattern: str) -> None:
    """Exit status 2, one ``medssl: error:`` line matching ``pattern``, no traceback."""
    import re

    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("medssl: error:")]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


def spawn_medssl(args: List[str], **kw: Any) -> "subprocess.Popen[str]":
    """``python -m medssl ARGS`` as a child process (single-threaded BLAS, unbuffered)."""
    return subprocess.Popen([sys.executable, "-m", "medssl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **CHILD_ENV}, **kw)
