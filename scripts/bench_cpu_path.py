"""The CPU fast path, measured: memory layout, bf16 autocast and torch.compile for one
training forward+backward of a backbone on the CPU.

Contenders (each its own model from the same seed, same input, same torch threads):

* ``fp32``               -- the default (contiguous NCHW, float32);
* ``fp32 channels_last`` -- model and input in ``torch.channels_last``;
* ``bf16 autocast``      -- ``torch.autocast("cpu", torch.bfloat16)`` (``--bf16``);
* ``compiled``           -- ``torch.compile(model)`` with inductor (``--compile``; its
  first two calls, tracing and compiling, are timed separately).

Steps are interleaved (one of each per round, ``--rounds`` rounds after one warm-up) and
the median milliseconds and the speed relative to ``fp32`` are reported per shape.

    python scripts/bench_cpu_path.py --shapes 64:32:std 28:256:std --rounds 6 --bf16 --compile
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, load_average, median, table  # noqa: E402

from medssl.device import cpu_has_native_bf16  # noqa: E402
from medssl.models.backbone import build_backbone  # noqa: E402
from medssl.threads import apply_threads, plan_threads  # noqa: E402


def contenders(backbone: str, size: int, batch: int, small_stem: bool, bf16: bool,
               compile_: bool) -> Dict[str, Callable[[], object]]:
    """One forward+backward closure per contender."""
    def model(channels_last: bool = False) -> torch.nn.Module:
        torch.manual_seed(0)
        m = build_backbone(backbone, image_size=size, small_input_stem=small_stem).train()
        return m.to(memory_format=torch.channels_last) if channels_last else m

    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def step(m: Callable[[torch.Tensor], torch.Tensor], inp: torch.Tensor, autocast: bool = False) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = m(inp)
        y.float().square().mean().backward()

    m32, mcl = model(), model(True)
    fns: Dict[str, Callable[[], object]] = {"fp32": lambda: step(m32, x),
                                            "fp32 channels_last": lambda: step(mcl, x_cl)}
    if bf16:
        mbf = model()
        fns["bf16 autocast"] = lambda: step(mbf, x, autocast=True)
    if compile_:
        mc = torch.compile(model())
        fns["compiled"] = lambda: step(mc, x)
    return fns


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--shapes", nargs="+", default=["64:32:std", "28:256:std"],
                   help="SIZE:BATCH:STEM, STEM = std (timm stem) or small (small-input stem)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", default="auto")
    p.add_argument("--bf16", action="store_true", help="also bf16 autocast")
    p.add_argument("--compile", action="store_true", help="also torch.compile (inductor)")
    p.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.shapes, args.rounds = "test_resnet", ["16:4:std"], 1
    plan = plan_threads(args.threads if args.threads == "auto" else int(args.threads), key="--threads")
    apply_threads(plan)
    print(header("CPU fast path: layout, bf16 autocast, torch.compile"))
    print(f"threads: {plan.describe()}; native bf16: {cpu_has_native_bf16()}\n")
    for shape in args.shapes:
        size, batch, stem = shape.split(":")
        fns = contenders(args.backbone, int(size), int(batch), stem == "small", args.bf16, args.compile)
        compile_s = None
        if "compiled" in fns:
            start = time.perf_counter()
            fns["compiled"]()
            fns["compiled"]()
            compile_s = time.perf_counter() - start
        times = interleaved(fns, reps=args.rounds, warmup=1)
        base, base_min = median(times["fp32"]), min(times["fp32"])
        # On a shared machine the minimum is the least disturbed estimate: both are shown.
        rows = [[k, f"{1e3 * median(ts):.0f}", " / ".join(f"{1e3 * t:.0f}" for t in ts), f"{base / median(ts):.2f}x",
                 f"{base_min / min(ts):.2f}x"] for k, ts in times.items()]
        print(f"### {args.backbone}, {size} px, batch {batch}, {stem} stem"
              + (f" (compiling took {compile_s:.0f} s)" if compile_s is not None else "") + "\n")
        print(table(["contender", "median fwd+bwd (ms)", "rounds (ms)", "speed vs fp32 (median)",
                     "speed vs fp32 (min)"], rows))
        print(f"\nload average: {load_average()}\n")


if __name__ == "__main__":
    main()
