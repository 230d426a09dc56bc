"""PCAM reading speed: ``medssl.data.pcam.PCAM`` vs ``torchvision.datasets.PCAM``.

Builds one PCAM-format split from the real 96 x 96 H&E tiles in ``../shared/data/histology``
repeated with random D4 flips to ``--images`` images, in each ``--layouts`` entry:
``gzip`` (``write_pcam_split(..., compression="gzip")``: gzip level 4, one image per
chunk) or ``raw`` (``write_pcam_split``'s default: one uncompressed contiguous dataset). Reads it with both
datasets through a DataLoader (batch 64, collated by a function that only counts, so
that only reading is timed), in random and sequential order, with 0 and 2 workers. torchvision re-opens both HDF5 files per
item and converts to PIL; medssl opens the image file once per process.

Loaders are persistent and warmed up (worker start and page cache excluded); every
(order, workers) cell times medssl and torchvision round-robin ``--reps`` times and
reports the medians and their ratio.

    python scripts/bench_pcam_reading.py --images 20000 --reads 2000 --reps 3 --layouts gzip raw
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, load_average, median, table  # noqa: E402

from medssl.data.pcam import PCAM, write_pcam_split  # noqa: E402

TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "histology" / "he_patches_96x96_unlabeled.npz"


def count_items(batch: Sequence[Any]) -> int:
    """Collate that only counts: keeps PIL images (torchvision) and arrays (medssl) alike."""
    return len(batch)


def make_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` real H&E tiles (N, 96, 96, 3) uint8, repeated with random flips/rotations."""
    with np.load(TILES, allow_pickle=False) as z:
        tiles = z["images"]
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(tiles), n)
    rot = rng.integers(0, 4, n)
    flip = rng.integers(0, 2, n).astype(bool)
    out = np.empty((n, 96, 96, 3), np.uint8)
    for i in range(n):
        img = np.rot90(tiles[src[i]], rot[i])
        out[i] = img[:, ::-1] if flip[i] else img
    return out


def build_split(root: Path, n: int, layout: str = "gzip") -> Path:
    """Write a PCAM train split of ``n`` images into ``root/pcam`` (torchvision's layout) with
    medssl's writer: ``layout`` ``gzip`` compresses one image per chunk, ``raw`` (the
    writer's default) stores the images uncompressed."""
    images = make_images(n)
    labels = np.random.default_rng(1).integers(0, 2, n)
    write_pcam_split(root / "pcam", "train", images, labels, compression="gzip" if layout == "gzip" else None)
    return root / "pcam"


def loader(dataset: Any, order: List[int], workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=64, sampler=order, num_workers=workers, collate_fn=count_items,
                      persistent_workers=workers > 0)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=20000, help="images in the written split")
    ap.add_argument("--reads", type=int, default=2000, help="items read per timed pass")
    ap.add_argument("--reps", type=int, default=3, help="interleaved timed passes per cell")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--layouts", nargs="+", default=["gzip", "raw"], choices=["gzip", "raw"])
    ap.add_argument("--smoke", action="store_true", help="tiny setting for tests (a few seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.reads, args.reps, args.workers, args.layouts = 300, 128, 1, [0], ["gzip"]
    from torchvision.datasets import PCAM as TVPCAM

    print(header("PCAM reading: medssl vs torchvision"))
    print(f"{args.images} images per split, {args.reads} items per pass, {args.reps} interleaved passes, "
          f"batch 64\n")
    rows = []
    for layout in args.layouts:
        with tempfile.TemporaryDirectory(prefix="medssl_bench_pcam_") as tmp:
            t0 = time.perf_counter()
            root = build_split(Path(tmp), args.images, layout)
            mib = (root / "camelyonpatch_level_2_split_train_x.h5").stat().st_size / 2**20
            print(f"  {layout}: x file {mib:.0f} MiB, written in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
            ours, theirs = PCAM(root, "train"), TVPCAM(tmp, split="train", download=False)
            assert len(ours) == len(theirs) == args.images
            rng = np.random.default_rng(0)
            orders = {"random": rng.permutation(args.images)[: args.reads].tolist(),
                      "sequential": list(range(min(args.reads, args.images)))}
            for workers in args.workers:
                for name, order in orders.items():
                    loaders = {"medssl": loader(ours, order, workers), "torchvision": loader(theirs, order, workers)}
                    times = interleaved({k: (lambda dl=dl: sum(dl)) for k, dl in loaders.items()}, args.reps)
                    m, t = len(order) / median(times["medssl"]), len(order) / median(times["torchvision"])
                    rows.append([f"{layout} ({mib:.0f} MiB)", name, workers, f"{m:,.0f}", f"{t:,.0f}", f"{m / t:.1f}x"])
                    print(f"  {layout}, {name}, {workers} workers: medssl {m:,.0f}/s, torchvision {t:,.0f}/s "
                          f"(load {load_average()})", file=sys.stderr, flush=True)
                    del loaders
    print(table(["layout (x file)", "order", "workers", "medssl (img/s)", "torchvision (img/s)", "ratio"], rows))
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
