"""Provenance fingerprints and the frozen-feature cache of a transfer run.

Features of one split are written once to ``features_{split}.npz`` (keys ``features``
``[N, F]`` float32, ``labels``, ``fingerprint``) and reused while the fingerprint still
matches: the sha256 of the encoder file, the dataset config, the split and the
fingerprint of every data file. A data file's fingerprint is its size plus the sha256
of its first and last MiB (hashing a 7 GB PCAM file on every run would cost minutes;
any rewrite of the file changes its size or its head/tail in practice).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from medssl.errors import DataError

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
MAX_FILES = 64  # a folder dataset may hold thousands of images: fingerprint the first ones


def sha256_file(path: Path) -> str:
    """Full sha256 of a file (for encoders, which are small)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def file_fingerprint(path: Path) -> Dict[str, Any]:
    """``{path, size, head_tail_sha256}``: size plus sha256 of the first and last MiB."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with p.open("rb") as fh:
        h.update(fh.read(_CHUNK))
        if size > _CHUNK:
            fh.seek(max(_CHUNK, size - _CHUNK))
            h.update(fh.read(_CHUNK))
    return {"path": str(p), "size": int(size), "head_tail_sha256": h.hexdigest()}


def data_files(config: Mapping[str, Any]) -> List[Path]:
    """The files a registry dataset config reads (``path`` / ``csv`` / every file under
    ``root``), sorted, at most :data:`MAX_FILES`."""
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
    return sorted(set(out))[:MAX_FILES]


def data_provenance(config: Mapping[str, Any], describe: Mapping[str, Any]) -> Dict[str, Any]:
    """What a report records about a dataset: its config, ``describe()`` and file fingerprints."""
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in config.items()},
        "describe": dict(describe),
        "files": [file_fingerprint(p) for p in data_files(config)],
    }


def fingerprint(encoder_sha256: str, data: Mapping[str, Any], split: str) -> str:
    """The cache key of one split's features (a sha256 hex string)."""
    body = {"encoder": encoder_sha256, "config": data["config"], "split": split,
            "files": [(f["path"], f["size"], f["head_tail_sha256"]) for f in data["files"]]}
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
