"""Throughput of the augmentation presets: per-image CPU path vs batched path.

Prints a Markdown table of images/s for each preset and image size:

* ``cpu/img`` -- the per-image numpy path in one process (what one DataLoader worker does);
* ``batch/cpu`` -- :class:`medssl.augment.gpu.BatchAugment` on CPU tensors (torch threads
  as configured, ``--threads``);
* ``batch/cuda`` -- the same on the GPU (uint8 batch already on the device, synchronised),
  or ``n/a`` without CUDA.

Inputs are real H&E tiles (``--data``, default the shared 96x96 tiles; scikit-image's
IHC image when that file is absent), resized so that input size = output size (as for
MedMNIST at 28 px and PCAM at 96 px); the ``gray`` preset gets their 1-channel luma.

    python scripts/bench_augment.py --sizes 28 64 96 --images 300 --batches 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from medssl.augment import build_augmentation
from medssl.augment.colour import adapt_channels
from medssl.augment.geometry import resize
from medssl.augment.gpu import build_batch_augmentation

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "histology" / "he_patches_96x96_unlabeled.npz"


def load_tiles(path: Path, n: int) -> np.ndarray:
    """``n`` real RGB tiles (N, 96, 96, 3) uint8."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            tiles = z["images"]
    else:
        from skimage.data import immunohistochemistry

        ihc = immunohistochemistry()
        tiles = np.stack([ihc[y : y + 96, x : x + 96] for y in range(0, 416, 96) for x in range(0, 416, 96)])
        print(f"note: {path} not found; using scikit-image's IHC image", file=sys.stderr)
    reps = -(-n // len(tiles))
    return np.concatenate([tiles] * reps)[:n]


def timed(fn: Callable[[], object], sync: Optional[Callable[[], None]] = None) -> float:
    start = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - start


def bench_cpu(name: str, images: List[np.ndarray], size: int) -> float:
    aug = build_augmentation(name, size)
    rng = np.random.default_rng(0)
    for img in images[:10]:  # warm-up (lazy imports, caches)
        aug(img, rng)
    dt = timed(lambda: [aug(img, rng) for img in images])
    return len(images) / dt


def bench_batch(name: str, batch: torch.Tensor, size: int, batches: int, device: torch.device) -> float:
    aug = build_batch_augmentation(name, size)
    x = batch.to(device)
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    aug(x, gen)  # warm-up
    if sync:
        sync()
    dt = timed(lambda: [aug(x, gen) for _ in range(batches)], sync)
    return batches * len(x) / dt


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["histo", "natural", "gray", "eval"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[28, 64, 96])
    ap.add_argument("--images", type=int, default=300, help="images per CPU per-image measurement")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=5, help="batches per batched measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for the batched CPU path")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="npz with an 'images' array of RGB tiles")
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA column even if a GPU is present")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and not args.no_cuda

    tiles = load_tiles(args.data, max(args.images, args.batch_size))
    rows: List[Dict[str, str]] = []
    for size in args.sizes:
        rgb = np.stack([resize(t, size) for t in tiles])
        gray = np.stack([adapt_channels(t, 1) for t in rgb])
        for name in args.presets:
            src = gray if name == "gray" else rgb
            batch = torch.from_numpy(src[: args.batch_size]).permute(0, 3, 1, 2).contiguous()
            cpu = bench_cpu(name, list(src[: args.images]), size)
            bcpu = bench_batch(name, batch, size, args.batches, torch.device("cpu"))
            bgpu = f"{bench_batch(name, batch, size, args.batches, torch.device('cuda')):,.0f}" if cuda else "n/a"
            rows.append({"preset": name, "size": str(size), "cpu": f"{cpu:,.0f}", "bcpu": f"{bcpu:,.0f}", "bgpu": bgpu})
            print(f"  {name} {size}px done", file=sys.stderr)

    threads = torch.get_num_threads()
    print(f"| preset | px | cpu/img, 1 process (img/s) | batch/cpu, {threads} threads (img/s) | batch/cuda (img/s) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['size']} | {r['cpu']} | {r['bcpu']} | {r['bgpu']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
