"""Whole-slide tiling speed and memory, and ``wsi_tiles`` read speed vs the PCAM reader.

1. ``medssl data tile`` (a fresh process per run, as a user runs it) on ``--copies``
   copies of the real Aperio slide ``../shared/data/histology/cmu_small_region_HE.svs``
   (2220 x 2967 px at 0.499 um/px), 96 px tiles at 0.5 um/px, Otsu tissue mask, with 1 and
   2 ``--workers``: wall time, tiles kept per second of wall time and per second of slide
   work (the manifest's per-slide times, i.e. per core), and the peak resident memory of
   the largest process (``ru_maxrss`` of the waited-for descendants). Peak memory is measured
   for 1 copy and for all copies: it must not grow with the slide count.
2. Reading: the tiles of the largest tiling through ``wsi_tiles`` and, written with
   ``write_pcam_split`` (uncompressed, as ``medssl data tile`` writes shards), through
   ``medssl.data.pcam.PCAM``: a DataLoader (batch 64, a collate that only counts) in
   random order with 0 and 2 workers, persistent and warmed up, timed round-robin
   ``--reps`` times (medians).

    python scripts/bench_tiling.py --copies 10 --reps 3
    python scripts/bench_tiling.py --smoke       # seconds: 2 copies, 1 rep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, load_average, median, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SLIDE = REPO.parent / "shared" / "data" / "histology" / "cmu_small_region_HE.svs"

# Runs the CLI in a child and prints its wall time and the largest descendant's peak RSS.
_MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t
print(json.dumps({"rc": rc, "wall": wall, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def make_copies(src: Path, folder: Path, n: int) -> List[Path]:
    """``n`` byte copies of ``src`` (distinct files: a link would be refused as the same slide)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"slide{i:03d}{src.suffix}"
        if not p.exists():
            shutil.copyfile(src, p)
        out.append(p)
    return out


def run_tile(slides: Sequence[Path], out: Path, workers: int) -> Dict[str, Any]:
    """One ``medssl data tile`` run in a fresh process: wall s, peak RSS MiB, tiles kept."""
    cmd = [sys.executable, "-m", "medssl", "data", "tile", *map(str, slides), "--out", str(out),
           "--tile", "96", "--mpp", "0.5", "--workers", str(workers), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = json.loads(subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True,
                                    env=env, check=True).stdout)
    if res["rc"] != 0:
        raise RuntimeError(f"medssl data tile exited {res['rc']}")
    manifest = json.loads((out / "manifest.json").read_text())
    slide_s = sum(rec["seconds"] for rec in manifest["slides"].values())
    return {"wall": res["wall"], "rss_mib": res["maxrss_kib"] / 1024, "tiles": manifest["totals"]["tiles"],
            "slides": len(slides), "slide_s": slide_s}


def count_items(batch: Sequence[Any]) -> int:
    return len(batch)


def reading(tiles_dir: Path, tmp: Path, reps: int, workers_list: Sequence[int]) -> List[List[Any]]:
    """Rows ``[workers, wsi_tiles items/s, PCAM items/s, ratio]`` on the same tiles."""
    import torch

    from medssl.data.pcam import PCAM, write_pcam_split
    from medssl.data.wsi_tiles import WSITiles

    wsi = WSITiles(tiles_dir)
    images = np.stack([wsi[i][0] for i in range(len(wsi))])
    write_pcam_split(tmp / "pcam", "train", images, np.zeros(len(images), np.int64))
    pcam = PCAM(tmp / "pcam", "train")
    rows = []
    for workers in workers_list:
        loaders = {}
        for name, ds in (("wsi_tiles", wsi), ("pcam", pcam)):
            g = torch.Generator().manual_seed(0)
            loaders[name] = DataLoader(ds, batch_size=64, shuffle=True, generator=g, num_workers=workers,
                                       collate_fn=count_items, persistent_workers=workers > 0)
        fns = {name: (lambda dl=dl: sum(dl)) for name, dl in loaders.items()}
        times = interleaved(fns, reps=reps, warmup=1)
        a, b = len(wsi) / median(times["wsi_tiles"]), len(pcam) / median(times["pcam"])
        rows.append([workers, f"{a:,.0f}", f"{b:,.0f}", f"{a / b:.2f}x"])
    return rows


def main(argv: Optional[Sequence[str]] = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=10, help="slide copies in the large run (default 10)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of each read (default 3)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="tiling processes to try")
    ap.add_argument("--smoke", action="store_true", help="2 copies, 1 rep: seconds")
    args = ap.parse_args(argv)
    if args.smoke:
        args.copies, args.reps = 2, 1
    if not SLIDE.is_file():
        raise SystemExit(f"bench_tiling: the real slide {SLIDE} is missing (see ../shared/data/MANIFEST.md)")
    out: List[str] = [header("Whole-slide tiling (medssl data tile) and wsi_tiles reading")]
    with tempfile.TemporaryDirectory(prefix="bench_tiling_") as d:
        tmp = Path(d)
        slides = make_copies(SLIDE, tmp / "slides", args.copies)
        rows = []
        largest: Optional[Path] = None
        for workers in args.workers:
            for n in sorted({1, args.copies}):
                dest = tmp / f"tiles_w{workers}_n{n}"
                r = run_tile(slides[:n], dest, workers)
                rows.append([workers, n, r["tiles"], f"{r['wall']:.2f}", f"{r['tiles'] / r['wall']:,.0f}",
                             f"{r['slide_s']:.2f}", f"{r['tiles'] / r['slide_s']:,.0f}", f"{r['rss_mib']:.0f}"])
                if n == args.copies and largest is None:
                    largest = dest
        out.append(f"slide: {SLIDE.name} (2220 x 2967 px, 0.499 um/px), 96 px tiles at 0.5 um/px, "
                   "--tissue otsu --min-tissue 0.5; wall time includes process start and imports, 'slide s' is the "
                   "sum of the per-slide times in the manifest (the work itself, per core)\n")
        out.append(table(["workers", "slides", "tiles kept", "wall s", "tiles/s (wall)", "slide s (sum)",
                          "tiles/s per core", "peak RSS MiB (largest process)"], rows))
        assert largest is not None
        read_rows = reading(largest, tmp, args.reps, [0, 2])
        out.append(f"\nreading {args.copies} slides' tiles, DataLoader batch 64, random order, median of "
                   f"{args.reps}:\n")
        out.append(table(["workers", "wsi_tiles items/s", "PCAM items/s", "wsi/PCAM"], read_rows))
    out.append(f"\nload average at end: {load_average()}")
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(total {time.perf_counter() - t0:.0f} s)")
