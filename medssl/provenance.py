"""Provenance: what produced a result. File fingerprints, the package versions and git
commit of the code, and the records a training run and a transfer report keep.

Below both :mod:`medssl.train` (checkpoints record :func:`run_provenance`) and
:mod:`medssl.eval` (reports record :func:`data_provenance`; the feature cache keys on it).
A training-run record uses :func:`file_fingerprint` (size plus the sha256 of the first and
last MiB, so starting a run on a 7 GB file stays instant); a report uses
:func:`content_fingerprint` (the whole file), because a cache key must see every byte.

Every cache in medssl is keyed by the *content* of its sources, never by a timestamp
(``cp -p``, ``tar`` and ``rsync -t`` carry an old mtime onto new bytes): either the full
sha256 (:func:`sha256_file`) or, where hashing gigabytes on every open would cost more than
it saves, size plus the sha256 of the first and last block (:func:`head_tail_sha256`)
combined with a checksum the format itself keeps of the whole content (the MedMNIST
memory-map copies; see ``docs/reliability.md``, "Caches are keyed by content").
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from medssl.fileio import PathLike

MAX_FILES = 64  # files listed one by one in records; the content digest covers all of them
HASH_BLOCK = 1 << 20  # 1 MiB: read size of the hashes, and the head / tail block


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a whole file, streamed in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def head_tail_sha256(path: PathLike, block: int = HASH_BLOCK) -> str:
    """Hex sha256 of the file size, its first ``block`` bytes and its last ``block`` bytes
    (the whole file when it is at most two blocks long): constant cost for any size."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        h = hashlib.sha256(str(size).encode())
        h.update(fh.read(block))
        if size > block:
            fh.seek(max(block, size - block))
            h.update(fh.read(block))
    return h.hexdigest()



def file_fingerprint(path: Path) -> Dict[str, Any]:
    """``{path, size, head_tail_sha256}``: size plus sha256 of the first and last MiB."""
    p = Path(path)
    return {"path": str(p), "size": int(p.stat().st_size), "head_tail_sha256": head_tail_sha256(p)}


def content_fingerprint(path: Path) -> Dict[str, Any]:
    """``{path, size, sha256}`` with the sha256 of the whole file."""
    p = Path(path)
    return {"path": str(p), "size": int(p.stat().st_size), "sha256": sha256_file(p)}


def data_files(config: Mapping[str, Any], limit: Optional[int] = MAX_FILES) -> List[Path]:
    """The files a registry dataset config names (``path`` / ``csv`` / every file under
    ``root``), sorted, at most ``limit`` (``None``: all)."""
    out: List[Path] = []
    for key in ("path", "csv", "root"):
        value = config.get(key)
        if not value:
            continue
        p = Path(str(value)).expanduser()
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(q for q in sorted(p.rglob("*")) if q.is_file())
    found = sorted(set(out))
    return found if limit is None else found[:limit]


def data_provenance(config: Mapping[str, Any], describe: Mapping[str, Any],
                    files: Optional[Sequence[Path]] = None) -> Dict[str, Any]:
    """What a report records about a dataset: its config, ``describe()``, the number of
    files it reads, ``content_sha256`` over all of them (path, size, sha256 of each) and
    the first :data:`MAX_FILES` fingerprints. ``files``: the dataset's
    ``source_files()``; when it lists none, the files the config names."""
    paths = list(files) if files else data_files(config, limit=None)
    prints = [content_fingerprint(p) for p in paths]
    digest = hashlib.sha256()
    for f in prints:
        digest.update(f"{f['path']}\0{f['size']}\0{f['sha256']}\n".encode())
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in config.items()},
        "describe": dict(describe),
        "n_files": len(prints),
        "content_sha256": digest.hexdigest(),
        "files": prints[:MAX_FILES],
    }


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
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_provenance(config: Dict[str, Any], dataset_cfgs: Iterable[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
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
