"""Tile whole-slide images into shards: one slide per task, many slides over a process pool.

:func:`tile_slide` does one slide start to end (plan, tissue mask, tile selection,
shards, thumbnail) holding one tile and one low-resolution image in memory, whatever
the slide size. :func:`tile_slides` checks the request, runs :func:`tile_slide` over a
process pool and keeps the manifest (:mod:`medssl.wsi.manifest`) current after every
slide, so an interrupted run continues with ``resume=True``.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medssl.errors import DataError
from medssl.provenance import sha256_file
from medssl.wsi.grid import TilePlan, plan_tiles
from medssl.wsi.manifest import NAME as MANIFEST_NAME
from medssl.wsi.manifest import TilingParams, load_manifest, new_manifest, save_manifest
from medssl.wsi.shards import SHARD_DIR, batched, meta_dtype, shard_matches, shard_name, slide_stem, write_shard
from medssl.wsi.slide import Slide, open_slide
from medssl.wsi.thumbnail import draw_tiles, write_png
from medssl.wsi.tissue import otsu_tissue_mask, tile_fractions

THUMB_DIR = "thumbnails"
TISSUE_METHODS = ("otsu", "none")
# The low-resolution image (tissue mask and thumbnail) has at least this many pixels per
# tile side, and its long side stays within these bounds.
MASK_PX_PER_TILE = 8
THUMB_SIDE = (1024, 4096)

Progress = Callable[[str], None]


def slide_ids(paths: Sequence[Any]) -> Dict[str, Path]:
    """``{slide id: path}`` (id = file name without its extension); a path given twice or
    two files with the same id are an error naming them."""
    out: Dict[str, Path] = {}
    seen: Dict[Any, Path] = {}
    for raw in paths:
        p = Path(raw).expanduser()
        try:  # the same file through a link or another path is the same slide
            st = p.stat()
            key: Any = (st.st_dev, st.st_ino)
        except OSError:
            key = p.resolve()
        if key in seen:
            same = "" if seen[key] == p else f" (the same file as {seen[key]})"
            raise DataError(f"{p}: slide given twice on the command line{same}; list each slide once")
        sid = p.stem[:-4] if p.stem.lower().endswith(".ome") else p.stem
        if sid in out:
            raise DataError(f"{p}: same slide id {sid!r} as {out[sid]}; slide ids come from file names and "
                            "must be unique: rename one of the files")
        out[sid] = p
        seen[key] = p
    return out


def low_res(slide: Slide, footprint0: float) -> Tuple[np.ndarray, float]:
    """The slide's low-resolution image for the mask and thumbnail, and its scale in
    level-0 pixels per image pixel."""
    w0, h0 = slide.info.level_dimensions[0]
    long0 = max(w0, h0)
    side = math.ceil(long0 * MASK_PX_PER_TILE / footprint0)
    side = int(min(max(side, THUMB_SIDE[0]), THUMB_SIDE[1], long0))
    thumb = slide.thumbnail(side)
    return thumb, w0 / thumb.shape[1]


def select_tiles(slide_id: str, corners: np.ndarray, fractions: np.ndarray, params: TilingParams) -> np.ndarray:
    """Indices of the tiles to keep, in raster order: enough tissue, then at most
    ``max_tiles_per_slide`` drawn at random (seeded by ``seed`` and the slide id)."""
    keep = np.arange(len(corners)) if params.tissue == "none" else np.flatnonzero(fractions >= params.min_tissue)
    cap = params.max_tiles_per_slide
    if cap is not None and len(keep) > cap:
        rng = np.random.default_rng([params.seed, zlib.crc32(slide_id.encode("utf-8"))])
        keep = np.sort(rng.choice(keep, size=cap, replace=False))
    return keep


def _tile_reader(slide: Slide, plan: TilePlan, corners: np.ndarray) -> Callable[[int], np.ndarray]:
    from PIL import Image

    def read(i: int) -> np.ndarray:
        x, y = corners[i]
        img = slide.read(int(x), int(y), plan.level, plan.read_size, plan.read_size)
        if plan.read_size != plan.tile:
            img = np.asarray(Image.fromarray(img).resize((plan.tile, plan.tile), Image.Resampling.LANCZOS))
        return img

    return read


def tile_slide(path: Any, slide_id: str, out: Any, params: TilingParams) -> Dict[str, Any]:
    """Tile one slide into ``out/shards`` and ``out/thumbnails``; returns its manifest
    record. Shards already on disk with the expected tiles (from an interrupted run) are
    kept. Raises DataError for an unreadable slide or an impossible request."""
    start = time.perf_counter()
    out = Path(out)
    with open_slide(path) as slide:
        info = slide.info
        plan = plan_tiles(info, params.tile, mpp=params.mpp, level=params.level, overlap=params.overlap,
                          slide_mpp=params.slide_mpp)
        corners = plan.grid(*info.level_dimensions[0])
        thumb, scale = low_res(slide, plan.footprint0)
        mask = otsu_tissue_mask(thumb)
        fractions = tile_fractions(mask, corners, plan.footprint0, scale)
        keep = select_tiles(slide_id, corners, fractions, params)
        kept = corners[keep]
        id_bytes = len(slide_id.encode("utf-8"))
        meta = np.zeros(len(keep), dtype=meta_dtype(id_bytes))
        meta["slide"] = slide_id.encode("utf-8")
        meta["level"] = plan.level
        meta["x"], meta["y"] = kept[:, 0], kept[:, 1]
        meta["mpp"] = np.nan if plan.mpp is None else plan.mpp
        meta["tissue"] = fractions[keep]
        read = _tile_reader(slide, plan, kept)
        shards: List[Dict[str, Any]] = []
        for k, rows in enumerate(batched(len(keep), params.shard_size)):
            name = shard_name(slide_id, k)
            target = out / SHARD_DIR / name
            part = meta[rows.start:rows.stop]
            if not shard_matches(target, part):
                write_shard(target, slide_id, plan.tile, part, lambda i, s=rows.start: read(s + i))
            shards.append({"file": f"{SHARD_DIR}/{name}", "tiles": len(part), "sha256": sha256_file(target)})
        thumb_rel = f"{THUMB_DIR}/{slide_stem(slide_id)}.png"
        write_png(out / thumb_rel, draw_tiles(thumb, mask, kept, plan.footprint0, scale))
    return {
        "path": str(path), "status": "done", "error": None, "backend": info.backend, "level": plan.level,
        "mpp": plan.mpp, "slide_mpp": info.mpp if params.slide_mpp is None else params.slide_mpp,
        "level0_size": list(info.level_dimensions[0]), "grid_tiles": int(len(corners)),
        "kept": int(len(keep)), "rejected": int(len(corners) - len(keep)),
        "thumbnail": thumb_rel, "shards": shards, "seconds": round(time.perf_counter() - start, 3),
    }


def _tile_one(path: str, slide_id: str, out: str, params: TilingParams) -> Dict[str, Any]:
    """Pool task: :func:`tile_slide`, with any failure turned into a ``failed`` record."""
    try:
        return tile_slide(path, slide_id, out, params)
    except DataError as exc:
        error = str(exc)
    except Exception as exc:  # one bad slide must not stop a cohort; the manifest records it
        error = f"{path}: {type(exc).__name__}: {exc}"
    return {"path": str(path), "status": "failed", "error": error, "shards": []}


def prepare_output(out: Path, params: TilingParams, resume: bool) -> Dict[str, Any]:
    """The manifest to continue: a new one for an empty/new ``out``, the existing one
    with ``resume``; refuses (DataError) to write into another tiling or a non-empty
    folder that is not one."""
    has_manifest = (out / MANIFEST_NAME).is_file()
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a directory; choose a directory path")
    if has_manifest:
        if not resume:
            raise DataError(f"--out {out}: already holds a tiling ({MANIFEST_NAME}); pass --resume to continue it, "
                            "or choose a new directory (nothing was changed)")
        manifest = load_manifest(out)
        old = manifest.get("params", {})
        diff = {k: (old.get(k), v) for k, v in params.to_dict().items() if old.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in sorted(diff.items()))
            raise DataError(f"--out {out}: --resume with different settings ({what}); use the settings of "
                            f"{out / MANIFEST_NAME} or tile into a new directory")
        return manifest
    if out.is_dir() and any(out.iterdir()):
        raise DataError(f"--out {out}: the directory is not empty and holds no tiling manifest; choose an empty "
                        "or new directory (nothing was changed)")
    return new_manifest(params)


def tile_slides(paths: Sequence[Any], out: Any, params: TilingParams, workers: int = 1, resume: bool = False,
                progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Tile ``paths`` into ``out`` with ``workers`` processes; returns the final manifest.

    A slide that fails is recorded as ``failed`` (with its one-line error) and the others
    carry on; slides already ``done`` in the manifest are skipped with ``resume``.
    """
    if params.tissue not in TISSUE_METHODS:
        raise DataError(f"--tissue must be one of {', '.join(TISSUE_METHODS)}, got {params.tissue!r}")
    if not 0.0 <= params.min_tissue <= 1.0:
        raise DataError(f"--min-tissue must be in [0, 1], got {params.min_tissue}")
    if params.shard_size < 1:
        raise DataError(f"--shard-size must be at least 1, got {params.shard_size}")
    if params.max_tiles_per_slide is not None and params.max_tiles_per_slide < 1:
        raise DataError(f"--max-tiles-per-slide must be at least 1, got {params.max_tiles_per_slide}")
    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    if not paths:
        raise DataError("no slides given; pass one or more slide files")
    ids = slide_ids(paths)
    out = Path(out).expanduser()
    manifest = prepare_output(out, params, resume)
    say = progress or (lambda line: None)
    for sid, p in ids.items():
        old = manifest["slides"].get(sid)
        if old is not None and Path(old["path"]).resolve() != p.resolve():
            raise DataError(f"{p}: slide id {sid!r} is already in {out / MANIFEST_NAME} for {old['path']}; "
                            "rename the file so slide ids stay unique")
    todo = [sid for sid in ids if manifest["slides"].get(sid, {}).get("status") != "done"]
    for sid in ids:
        manifest["slides"].setdefault(sid, {"path": str(ids[sid]), "status": "pending", "error": None, "shards": []})
        if sid in todo:
            manifest["slides"][sid]["status"] = "pending"
    out.mkdir(parents=True, exist_ok=True)
    save_manifest(out, manifest)
    if len(todo) < len(ids):
        say(f"resuming: {len(ids) - len(todo)} of {len(ids)} slide(s) already done")

    def record(i: int, sid: str, rec: Dict[str, Any]) -> None:
        manifest["slides"][sid] = rec
        save_manifest(out, manifest)
        if rec["status"] == "done":
            say(f"[{i}/{len(todo)}] {sid}: {rec['kept']} tiles kept, {rec['rejected']} rejected, "
                f"{len(rec['shards'])} shard(s), {rec['seconds']:.1f} s")
        else:
            say(f"[{i}/{len(todo)}] {sid}: FAILED: {rec['error']}")

    if workers == 1 or len(todo) <= 1:
        for i, sid in enumerate(todo, 1):
            record(i, sid, _tile_one(str(ids[sid]), sid, str(out), params))
    else:
        # spawn: slide libraries keep caches and threads that do not survive a fork
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_tile_one, str(ids[sid]), sid, str(out), params): sid for sid in todo}
            for i, fut in enumerate(as_completed(futures), 1):
                try:
                    rec = fut.result()
                except BrokenProcessPool as exc:  # a worker was killed (out of memory, signal)
                    raise DataError(
                        f"a tiling worker died while tiling {ids[futures[fut]]} ({exc}); finished slides are in "
                        f"{out / MANIFEST_NAME}: re-run with --resume (fewer --workers if memory ran out)"
                    ) from exc
                record(i, futures[fut], rec)
    return manifest


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
