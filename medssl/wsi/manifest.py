"""The tiling manifest (``OUT/manifest.json``): settings, slides, shards and checksums.

Written atomically at the start of a run (every slide ``pending``) and after each slide
finishes, so after a crash it says which slides are done; ``--resume`` trusts those and
redoes the rest. Keys::

    format, medssl_version, params {tile, mpp, level, overlap, tissue, min_tissue,
    max_tiles_per_slide, shard_size, seed, slide_mpp},
    slides {id: {path, status: pending|done|failed, error, backend, level, mpp,
                 grid_tiles, kept, rejected, thumbnail, seconds,
                 shards [{file, tiles, sha256}]}},
    totals {slides, done, failed, tiles}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from medssl._version import __version__
from medssl.errors import DataError
from medssl.fileio import atomic_write
from medssl.text import looked_at

FORMAT = "medssl-wsi-manifest/1"
NAME = "manifest.json"


@dataclass(frozen=True)
class TilingParams:
    """The settings that decide which pixels end up in which tile (all of them must
    match for ``--resume`` to continue a tiling)."""

    tile: int = 96
    mpp: Optional[float] = 0.5  # None when `level` is given
    level: Optional[int] = None
    overlap: int = 0
    tissue: str = "otsu"
    min_tissue: float = 0.5
    max_tiles_per_slide: Optional[int] = None
    shard_size: int = 2048
    seed: int = 0
    slide_mpp: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def new_manifest(params: TilingParams) -> Dict[str, Any]:
    return {"format": FORMAT, "medssl_version": __version__, "params": params.to_dict(), "slides": {}, "totals": {}}


def update_totals(manifest: Dict[str, Any]) -> None:
    slides = manifest["slides"].values()
    manifest["totals"] = {
        "slides": len(manifest["slides"]),
        "done": sum(s["status"] == "done" for s in slides),
        "failed": sum(s["status"] == "failed" for s in slides),
        "tiles": sum(int(s.get("kept") or 0) for s in slides if s["status"] == "done"),
    }


def save_manifest(out: Path, manifest: Dict[str, Any]) -> Path:
    update_totals(manifest)
    text = json.dumps(manifest, indent=1, sort_keys=False)
    return atomic_write(Path(out) / NAME, lambda tmp: Path(tmp).write_text(text + "\n"))


def load_manifest(out: Path) -> Dict[str, Any]:
    """The manifest of tiling directory ``out``; DataError naming the file when unreadable."""
    path = Path(out) / NAME
    if not path.is_file():
        at = "" if path.is_absolute() else f" (looked at {looked_at(path)})"
        raise DataError(f"{out}: no {NAME}{at}; this is not a `medssl data tile` output directory "
                        "(tile slides into it first: medssl data tile SLIDES... --out DIR)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the tiling manifest ({exc}); it is damaged. "
                        "Re-tile into a new directory") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("slides"), dict):
        raise DataError(f"{path}: not a medssl tiling manifest (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    return doc
