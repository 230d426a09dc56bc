"""Provenance fingerprints and the frozen-feature cache of a transfer run.

Features of one split are written once to ``features_{split}.npz`` (keys ``features``
``[N, F]`` float32, ``labels``, ``fingerprint``) and reused while the fingerprint still
matches: the sha256 of the encoder file, the dataset config, the split and the *content*
of every file the dataset reads (``dataset.source_files()``): the full sha256 of each,
never a timestamp and never a sample of the files. Hashing costs one sequential read of
the data (about 400 MB/s on a loaded 2-core machine, docs/benchmarks.md), less than the
embedding pass a hit saves, which reads the same bytes and runs the encoder on them; a
cache that missed an edited image would silently report numbers of the old data.

Training-run provenance (:func:`file_fingerprint`) is a record, not a cache key, and uses
size plus the sha256 of the first and last MiB so that starting a run on a 7 GB file
stays instant.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from medssl.errors import DataError
from medssl.fileio import head_tail_sha256, sha256_file

log = logging.getLogger(__name__)
MAX_FILES = 64  # files listed one by one in records; the content digest covers all of them


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


def fingerprint(encoder_sha256: str, data: Mapping[str, Any], split: str) -> str:
    """The cache key of one split's features (a sha256 hex string)."""
    body = {"encoder": encoder_sha256, "config": data["config"], "split": split,
            "content": [data["n_files"], data["content_sha256"]]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def load_cached(path: Path, key: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(features, labels)`` from ``path`` if it exists and was made under ``key``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != key:
                log.info("feature cache %s is stale (different encoder or data); recomputing", path)
                return None
            return z["features"], z["labels"]
    except (OSError, KeyError, ValueError) as exc:
        log.warning("feature cache %s unreadable (%s); recomputing", path, exc)
        return None


def save_cached(path: Path, key: str, features: np.ndarray, labels: np.ndarray) -> Path:
    """Write the cache file atomically (a crash never leaves a half-written cache)."""
    from medssl.fileio import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, features=np.asarray(features, np.float32), labels=np.asarray(labels),
                     fingerprint=np.asarray(key))

    atomic_write(path, write)
    return path


def cached_features(path: Path, key: str, compute: Callable[[], Tuple[np.ndarray, np.ndarray]]
                    ) -> Tuple[np.ndarray, np.ndarray, bool]:
    """``(features, labels, hit)``: from the cache when valid, else ``compute()`` and store."""
    hit = load_cached(path, key)
    if hit is not None:
        return hit[0], hit[1], True
    feats, labels = compute()
    if feats.shape[0] == 0:
        raise DataError(f"no items to embed for {path.name}; the split is empty")
    save_cached(path, key, feats, labels)
    return feats, labels, False
