"""Checkpoint rotation in a run directory: ``checkpoints/step_XXXXXXXX.pt``, newest
``keep_last`` kept. The file format itself is :mod:`medssl.checkpoint_io`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from medssl.checkpoint_io import save_checkpoint
from medssl.fileio import check_inside

_NAME = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointManager:
    """Writes ``checkpoints/step_XXXXXXXX.pt`` atomically and keeps the newest ``keep_last``."""

    def __init__(self, run_dir: Path, keep_last: int = 2) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.dir / f"step_{step:08d}.pt"

    def all(self) -> List[Path]:
        """Existing checkpoints, oldest first (temporary files of a killed write are ignored).

        A checkpoint name that is a link leading out of the run directory is a ConfigError
        naming it: nothing outside the run directory is read through it."""
        if not self.dir.is_dir():
            return []
        found = sorted(p for p in self.dir.iterdir() if _NAME.match(p.name))
        for p in found:  # a linked checkpoints/ (on scratch space) is the user's own; links in it are not
            check_inside(p, self.dir, "a checkpoint")
        return found

    def latest(self) -> Optional[Path]:
        found = self.all()
        return found[-1] if found else None

    def save(self, state: Dict[str, Any], step: int) -> Path:
        path = save_checkpoint(state, self.path_for(step))
        for old in self.all()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        for tmp in self.dir.glob(".step_*.tmp"):  # left by a run killed mid-write
            tmp.unlink(missing_ok=True)
        return path
