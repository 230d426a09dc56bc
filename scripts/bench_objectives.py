"""Benchmark the objectives' training-step time and the support-set top-k search.

For each objective: one full step (model forward of two views, objective forward with
its look-ups and enqueue, backward, SGD step, EMA target update) on random images with a
full support set of ``--queue`` rows; the median over ``--iters`` steps and its ratio to
SimCLR's step measured in the same run. Objectives are timed round-robin (one step of
each per round) so that load changes on a shared machine hit all of them alike.

Then the cosine top-k search time of ``SupportSet.topk`` for |Q| = 2^12 .. 2^17.

Prints Markdown tables. Example (the CPU setting of docs/benchmarks.md)::

    python scripts/bench_objectives.py --backbone resnet18 --image-size 32 --batch 64 --queue 16384
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from medssl.models import build_backbone, build_ssl_model
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES

NAMES = ("simclr", "nnclr", "pnnclr", "snclr", "psm")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def make_step(name: str, args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    """A closure running one training step of objective ``name`` on a fixed random batch."""
    torch.manual_seed(0)
    cfg: Dict[str, object] = {"name": name}
    if name == "snclr":
        cfg["dim"] = args.proj_dim
    objective = OBJECTIVES.build(cfg).to(device)
    model = build_ssl_model(build_backbone(args.backbone, image_size=args.image_size), objective,
                            proj_dim=args.proj_dim).to(device).train()
    support = None
    if objective.requirements.support_set:
        support = SupportSet(args.queue, args.proj_dim).to(device)
        support.enqueue(F.normalize(torch.randn(args.queue, args.proj_dim, device=device), dim=1))
    params = list(model.online_parameters()) + list(objective.parameters())
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    views = [torch.rand(args.batch, 3, args.image_size, args.image_size, device=device) for _ in range(2)]
    indices = torch.arange(args.batch, device=device)
    step = [0]

    def run() -> None:
        out = model(views, indices=indices)
        loss, _ = objective(out, support)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update_target(step[0], 1000)
        step[0] += 1

    return run


def bench_steps(args: argparse.Namespace, device: torch.device) -> List[str]:
    steps = {n: make_step(n, args, device) for n in args.objectives}
    times: Dict[str, List[float]] = {n: [] for n in steps}
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    for i in range(args.iters):
        for n, fn in steps.items():
            times[n].append(_timed(fn, device))
        print(f"round {i + 1}/{args.iters}: " + ", ".join(f"{n} {1e3 * t[-1]:.0f} ms" for n, t in times.items()),
              file=sys.stderr, flush=True)
    # On a shared machine the minimum is the least disturbed estimate; both are shown.
    base = times.get("simclr")
    lines = ["| objective | median (ms) | min (ms) | ratio to SimCLR (median) | ratio to SimCLR (min) |",
             "|---|---|---|---|---|"]
    for n, ts in times.items():
        med, low = statistics.median(ts), min(ts)
        r_med = f"{med / statistics.median(base):.3f}" if base else "n/a"
        r_min = f"{low / min(base):.3f}" if base else "n/a"
        lines.append(f"| {n} | {1e3 * med:.1f} | {1e3 * low:.1f} | {r_med} | {r_min} |")
    return lines


def profile_steps(args: argparse.Namespace, device: torch.device) -> List[str]:
    """``torch.profiler`` top operators (self CPU time) of two steps of each objective."""
    from torch.profiler import ProfilerActivity, profile

    lines = []
    for name in args.objectives:
        step = make_step(name, args, device)
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            step()
            step()
            seconds = (time.perf_counter() - start) / 2
        lines += [f"\n{name}: {1e3 * seconds:.0f} ms per step (profiled)\n", "```",
                  prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile), "```"]
    return lines


def bench_topk(args: argparse.Namespace, device: torch.device) -> List[str]:
    lines = ["| queue size | top-1 (ms) | top-30 (ms) |", "|---|---|---|"]
    query = F.normalize(torch.randn(args.batch, args.proj_dim, device=device), dim=1)
    for power in range(args.topk_min_pow, args.topk_max_pow + 1):
        m = 2 ** power
        support = SupportSet(m, args.proj_dim).to(device)
        support.enqueue(F.normalize(torch.randn(m, args.proj_dim, device=device), dim=1))
        cells = []
        for k in (1, 30):
            support.topk(query, k)  # warm-up
            ts = [_timed(lambda: support.topk(query, k), device) for _ in range(args.topk_iters)]
            cells.append(f"{1e3 * statistics.median(ts):.2f}")
        lines.append(f"| 2^{power} = {m} | {cells[0]} | {cells[1]} |")
    return lines


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64, help="images per step (each gives 2 views)")
    ap.add_argument("--queue", type=int, default=16384, help="support-set size |Q| for the step benchmark")
    ap.add_argument("--proj-dim", type=int, default=256)
    ap.add_argument("--iters", type=int, default=5, help="timed steps per objective")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--objectives", nargs="+", default=list(NAMES), choices=NAMES)
    ap.add_argument("--topk-min-pow", type=int, default=12)
    ap.add_argument("--topk-max-pow", type=int, default=17)
    ap.add_argument("--topk-iters", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="instead of timing: print the N top operators of each objective's step")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({dev_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"step: backbone {args.backbone}, {args.image_size} px, batch {args.batch} x 2 views, "
          f"|Q| {args.queue}, D {args.proj_dim}, {args.iters} timed steps after {args.warmup} warm-up\n")
    if args.profile:
        print("\n".join(profile_steps(args, device)))
        return 0
    print("\n".join(bench_steps(args, device)))
    print(f"\ntop-k search: batch {args.batch}, D {args.proj_dim}\n")
    print("\n".join(bench_topk(args, device)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
