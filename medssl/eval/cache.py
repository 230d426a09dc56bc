"""Provenance fingerprints and the frozen-feature cache of a transfer run.

Features of one split are written once to ``features_{split}.npz`` (keys ``features``
``[N, F]`` float32, ``labels``, ``fingerprint``) and reused while the fingerprint still
matches: the sha256 of the encoder file, the dataset config, the split and the *content*
of every file the dataset reads (``dataset.source_files()``): the full sha256 of each,
never a timestamp and never a sample of the files. Hashing costs one sequential read of
the data (about 400 MB/s on a loaded 2-core machine, docs/benchmarks.md), less than the
embedding pass a hit saves, which reads the same bytes and runs the encoder on them; a
cache that missed an edited image would silently report numbers of the old data.

The fingerprints themselves (file, content, dataset) live in :mod:`medssl.provenance`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Tuple

import numpy as np

from medssl.errors import DataError

log = logging.getLogger(__name__)


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
