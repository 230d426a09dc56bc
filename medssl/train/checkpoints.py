"""Run-directory checkpoint rotation and provenance records."""

from __future__ import annotations

import hashlib
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


def file_fingerprint(path: Path, block: int = 1 << 20) -> Dict[str, Any]:
    """Size plus SHA-256 of the first and last MiB: cheap enough for multi-GB HDF5 files,
    and it changes whenever a file is replaced, truncated or re-downloaded differently."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with p.open("rb") as fh:
        h.update(fh.read(block))
        if size > block:
            fh.seek(max(block, size - block))
            h.update(fh.read(block))
    return {"file": str(p), "size": size, "sha256_head_tail": h.hexdigest()}


def data_files(cfg: Dict[str, Any]) -> List[Path]:
    """The data files a dataset config points at: ``path``, ``csv``, or the files directly in
    ``root`` (and ``root/stl10_binary``) with a data extension."""
    out: List[Path] = []
    for key in ("path", "csv"):
        if cfg.get(key):
            out.append(Path(cfg[key]))
    root = cfg.get("root")
    if root:
        exts = {".h5", ".npz", ".npy", ".bin", ".csv", ".json", ".txt"}
        for d in (Path(root), Path(root) / "stl10_binary"):
            if d.is_dir():
                out.extend(sorted(p for p in d.iterdir() if p.is_file() and p.suffix in exts))
    return [p for p in out if p.is_file()]


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
