"""``medssl data tile`` and ``medssl data split`` (logic in tiler.py and splits.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from medssl.errors import DataError


def _run_tile(args: argparse.Namespace) -> int:
    from medssl.wsi.manifest import TilingParams
    from medssl.wsi.tiler import print_progress, tile_slides

    if args.level is None and args.mpp is None:
        args.mpp = 0.5
    params = TilingParams(tile=args.tile, mpp=args.mpp, level=args.level, overlap=args.overlap, tissue=args.tissue,
                          min_tissue=args.min_tissue, max_tiles_per_slide=args.max_tiles_per_slide,
                          shard_size=args.shard_size, seed=args.seed, slide_mpp=args.slide_mpp)
    manifest = tile_slides(args.slides, args.out, params, workers=args.workers, resume=args.resume,
                           progress=None if args.quiet else print_progress)
    t = manifest["totals"]
    print(f"{args.out}: {t['done']} of {t['slides']} slide(s) tiled, {t['tiles']} tiles; manifest {args.out}/manifest.json")
    failed = [(sid, rec) for sid, rec in manifest["slides"].items() if rec["status"] == "failed"]
    if failed:
        for sid, rec in failed:
            print(f"medssl: error: slide {sid} failed: {rec['error']}", file=sys.stderr)
        print(f"medssl: error: {len(failed)} slide(s) failed (listed in {args.out}/manifest.json); fix or remove "
              f"them and re-run with --resume to continue", file=sys.stderr)
        return 2
    return 0


def _run_split(args: argparse.Namespace) -> int:
    from medssl.wsi.splits import NAME, describe, write_splits

    if args.by in ("patient", "study"):  # radiology (dicom / nifti): medssl.data.split_command
        from medssl.data.split_command import run_group_split

        return run_group_split(args)
    if args.by != "slide":  # pragma: no cover - argparse choices already refuse
        raise DataError("--by must be 'slide', 'patient' or 'study'")
    doc = write_splits(args.dir, val=args.val, test=args.test, seed=args.seed)
    print(f"{args.dir}/{NAME}: {describe(doc)} (seed {args.seed})")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parsers(sub: Any) -> None:
    """Register ``tile`` and ``split`` under ``medssl data``."""
    p = sub.add_parser("tile", help="cut whole-slide images (.svs, .tif, .ndpi, .mrxs, ...) into tile shards",
                       description="Tile whole-slide images into HDF5 shards (PCAM layout + per-tile meta), "
                                   "keeping tiles with enough tissue; writes a manifest and per-slide thumbnails.")
    p.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (new, empty, or with --resume)")
    p.add_argument("--tile", type=int, default=96, help="tile side in output pixels (default 96)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, default=None, help="output microns per pixel (default 0.5)")
    res.add_argument("--level", type=int, default=None, help="read this pyramid level as is instead of --mpp (default: none, "
                     "the level nearest --mpp)")
    p.add_argument("--slide-mpp", type=float, default=None,
                   help="level-0 microns per pixel for slides whose metadata lacks it (default: from the slide)")
    p.add_argument("--overlap", type=int, default=0, help="pixels shared by neighbouring tiles (default 0)")
    p.add_argument("--tissue", choices=("otsu", "none"), default="otsu",
                   help="tissue detection: Otsu on saturation (default), or keep every tile")
    p.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction of a kept tile (default 0.5)")
    p.add_argument("--max-tiles-per-slide", type=_positive_int, default=None,
                   help="keep at most this many tiles per slide, drawn at random with --seed (default: all)")
    p.add_argument("--shard-size", type=_positive_int, default=2048, help="tiles per shard file (default 2048)")
    p.add_argument("--workers", type=_positive_int, default=1, help="slides tiled in parallel (processes, default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for --max-tiles-per-slide (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the tiling already in --out")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no per-slide progress lines (--no-progress, as on every long command)")
    p.set_defaults(func=_run_tile)

    p = sub.add_parser("split", help="slide-, patient- or study-level train/val/test splits (writes DIR/splits.json)")
    p.add_argument("dir", metavar="DIR", help="a `medssl data tile` output directory (--by slide), or a DICOM / NIfTI "
                                              "folder, manifest CSV or YAML config (--by patient / study)")
    p.add_argument("--by", choices=("slide", "patient", "study"), default="slide",
                   help="unit of the split (default slide, for tilings; patient or study for DICOM / NIfTI): "
                        "image- or tile-level splits leak near-copies into the test set")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="--by patient / study: where to write the splits file (default DIR/splits.json, or beside "
                        "the manifest CSV)")
    p.add_argument("--val", type=float, default=0.1, help="fraction of slides for validation (default 0.1)")
    p.add_argument("--test", type=float, default=0.1, help="fraction of slides for test (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.set_defaults(func=_run_split)
