"""Feature extraction: ``medssl.embed`` (what ``medssl embed`` / ``transfer`` / the kNN
monitor run) against a plain ``torch.no_grad`` loop over the same model and data.

Both contenders use an exported, randomly initialised ResNet-18 loaded with
``medssl.load_encoder`` (so the same preprocessing: resize, normalisation) and the same
images, batch size and torch threads. The plain loop is what a user would write by hand:
preprocess each item, stack a batch, ``model(x)`` under ``torch.no_grad()``. Runs are
interleaved (one pass of each per round) and the median images/s is reported.

    python scripts/bench_embed.py --images 2048 --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, load_average, median, table  # noqa: E402

import medssl  # noqa: E402
from medssl.models.backbone import build_backbone  # noqa: E402
from medssl.models.export import export_encoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BLOODMNIST = REPO.parent / "shared" / "data" / "medmnist" / "bloodmnist.npz"


def images(n: int, size: int) -> np.ndarray:
    """``n`` real BloodMNIST test images (28 px RGB) when the file is there, else seeded noise."""
    if BLOODMNIST.is_file():
        with np.load(BLOODMNIST) as z:
            arr = z["test_images"][:n]
        if len(arr) >= n and arr.shape[1] == size:
            return np.ascontiguousarray(arr)
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def plain_loop(model: torch.nn.Module, preprocess: Any, arr: np.ndarray, batch_size: int) -> np.ndarray:
    """The hand-written reference: per-item preprocessing, stacked batches, ``no_grad``."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(arr), batch_size):
            x = torch.stack([preprocess(img) for img in arr[i:i + batch_size]])
            out.append(model(x))
    return torch.cat(out).numpy()


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", default="auto", help="torch threads for both ('auto' = medssl's budget)")
    p.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.images, args.batch_size, args.rounds = "test_resnet", 64, 32, 1
    from medssl.threads import apply_threads, plan_threads

    plan = plan_threads(args.threads if args.threads == "auto" else int(args.threads), key="--threads")
    apply_threads(plan)
    print(header("Feature extraction: medssl.embed vs a plain torch.no_grad loop"))
    print(f"threads: {plan.describe()}\n")
    arr = images(args.images, args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        enc = build_backbone(args.backbone, image_size=args.image_size)
        export_encoder(enc, Path(tmp) / "encoder.safetensors", backbone=args.backbone, in_chans=3,
                       image_size=args.image_size, small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)
        model, preprocess = medssl.load_encoder(tmp)
    fns: Dict[str, Callable[[], object]] = {
        "medssl.embed": lambda: medssl.embed(model, arr, preprocess, batch_size=args.batch_size),
        "plain no_grad loop": lambda: plain_loop(model, preprocess, arr, args.batch_size),
    }
    a = medssl.embed(model, arr, preprocess, batch_size=args.batch_size)[0]
    b = plain_loop(model, preprocess, arr, args.batch_size)
    max_diff = float(np.abs(a - b).max())
    start = time.perf_counter()
    times = interleaved(fns, reps=args.rounds, warmup=0)
    rows = []
    ref = median(times["plain no_grad loop"])
    for name, ts in times.items():
        rows.append([name, f"{len(arr) / median(ts):,.0f}", " / ".join(f"{len(arr) / t:,.0f}" for t in ts),
                     f"{ref / median(ts):.2f}x"])
    print(f"{args.backbone}, {args.image_size} px, {len(arr)} images, batch {args.batch_size}, "
          f"{args.rounds} interleaved rounds ({time.perf_counter() - start:.0f} s); "
          f"largest feature difference between the two: {max_diff:.1e}\n")
    print(table(["contender", "median img/s", "rounds (img/s)", "speed vs plain loop"], rows))
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
