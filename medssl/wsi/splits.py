"""Slide-level train/val/test splits of a tiling (``OUT/splits.json``).

Splits are drawn over *slides*, never tiles: neighbouring tiles of one slide look alike,
so a tile-level split would put near-copies of test tiles in the training set.
``splits.json`` holds ``{format, by: "slide", seed, val, test, splits: {train: [ids],
val: [ids], test: [ids]}}``; the ``wsi_tiles`` dataset reads it for ``split: train|val|test``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from medssl.errors import DataError
from medssl.fileio import atomic_write
from medssl.wsi.manifest import load_manifest

FORMAT = "medssl-wsi-splits/1"
NAME = "splits.json"
SPLITS = ("train", "val", "test")


def split_slides(ids: List[str], val: float, test: float, seed: int = 0, where: str = "",
                 unit: str = "slide") -> Dict[str, List[str]]:
    """Shuffle ``ids`` with ``seed`` and cut ``round(val * n)`` / ``round(test * n)``
    slides for val / test (at least one each when its fraction is > 0); the rest train.
    ``unit`` names what an id is in errors (``patient`` for radiology splits)."""
    for name, frac in (("--val", val), ("--test", test)):
        if not 0.0 <= frac < 1.0:
            raise DataError(f"{name} must be a fraction in [0, 1), got {frac}")
    n = len(ids)
    n_val = max(1, round(val * n)) if val > 0 else 0
    n_test = max(1, round(test * n)) if test > 0 else 0
    if n_val + n_test >= n:
        more = "tile more slides" if unit == "slide" else f"add {unit}s"
        raise DataError(f"{where or 'the tiling'}: {n} {unit}(s) cannot give {n_val} val + {n_test} test {unit}(s) and at least one train "
                        f"{unit}; {more} or lower --val/--test")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(n)]
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}


def write_splits(root: Any, val: float = 0.1, test: float = 0.1, seed: int = 0) -> Dict[str, Any]:
    """Split the ``done`` slides of tiling ``root`` and write ``root/splits.json``
    (atomically, replacing an older one). Returns the written document."""
    root = Path(root)
    manifest = load_manifest(root)
    ids = sorted(sid for sid, rec in manifest["slides"].items() if rec.get("status") == "done")
    if not ids:
        raise DataError(f"{root}: the tiling has no finished slide to split; run `medssl data tile` first")
    doc = {"format": FORMAT, "by": "slide", "seed": seed, "val": val, "test": test,
           "splits": split_slides(ids, val, test, seed, where=str(root))}
    text = json.dumps(doc, indent=1)
    atomic_write(root / NAME, lambda tmp: Path(tmp).write_text(text + "\n"))
    return doc


def read_splits(root: Any) -> Dict[str, List[str]]:
    """``{split: [slide ids]}`` from ``root/splits.json``; DataError saying how to make it."""
    path = Path(root) / NAME
    if not path.is_file():
        raise DataError(f"{root}: no {NAME}; make slide-level splits first: medssl data split {root} --by slide")
    try:
        doc = json.loads(path.read_text())
        splits = doc["splits"]
        assert doc.get("format") == FORMAT and all(isinstance(splits[s], list) for s in SPLITS)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise DataError(f"{path}: not a medssl splits file ({type(exc).__name__}); re-create it with "
                        f"medssl data split {root} --by slide") from exc
    return {s: [str(i) for i in splits[s]] for s in SPLITS}


def describe(doc: Dict[str, Any]) -> str:
    """One line per split: how many slides."""
    return ", ".join(f"{s} {len(doc['splits'][s])}" for s in SPLITS) + " slide(s)"

