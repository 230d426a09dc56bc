"""Run-directory checkpoint rotation and provenance records."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from medssl.checkpoint import save_checkpoint

_NAME = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointManager:
    """Writes ``checkpoints/step_XXXXXXXX.pt`` atomically and keeps the newest ``keep_last``."""

    def __init__(self, run_dir: Path, keep_last: int = 2) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.dir / f"step_{step:08d}.pt"

    def all(self) -> List[Path]:
        """Existing checkpoints, oldest first (temporary files of a killed write are ignored)."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if _NAME.match(p.name))

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


def git_commit(cwd: Optional[Path] = None) -> Optional[str]:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=5)
    return res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def package_versions(names: Iterable[str] = ("medssl", "torch", "torchvision", "timm", "numpy", "h5py",
                                             "albumentations", "monai", "medmnist", "scikit-learn")) -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance(config: Dict[str, Any], dataset_cfgs: Iterable[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
    """Everything needed to say what produced a checkpoint: config, code, packages, data."""
    from medssl.eval.cache import data_files, file_fingerprint  # one fingerprint for runs and reports

    files = []
    for d in dataset_cfgs:
        if d:
            files.extend(file_fingerprint(p) for p in data_files(d))
    return {
        "config": config,
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "packages": package_versions(),
        "data_files": files,
        "host": platform.node(),
    }
