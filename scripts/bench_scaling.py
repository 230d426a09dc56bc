"""How the objective's cost grows with the support-set size |Q| and the batch size B.

The backbone is fixed out of the measurement: each step feeds the objective random unit
embeddings (leaf tensors that require grad, standing in for the model outputs) and times
its forward (look-up, loss, enqueue) plus ``loss.backward()``. The support set is full
with |Q| random unit rows. Also timed: ``SupportSet.topk`` alone with NNCLR's query
(2B rows, k = 1) and pNNCLR's (4B rows). Every point is the median of ``--reps``
calls, points of one sweep interleaved round-robin; a least-squares line
``t = a + b |Q|`` (and ``t = a + b B``) is fitted and its R^2 reported.

    python scripts/bench_scaling.py --min-pow 12 --max-pow 17 --batch 256 --batches 32 64 128 256 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, load_average, median, table  # noqa: E402

from medssl.models.outputs import ViewOutputs  # noqa: E402
from medssl.objectives.support_set import SupportSet  # noqa: E402
from medssl.registry import OBJECTIVES  # noqa: E402

OBJECTIVE_NAMES = ("nnclr", "pnnclr")


def full_support(size: int, dim: int, seed: int) -> SupportSet:
    gen = torch.Generator().manual_seed(seed)
    support = SupportSet(size, dim)
    support.enqueue(F.normalize(torch.randn(size, dim, generator=gen), dim=1))
    return support


def objective_step(name: str, support: SupportSet, batch: int, dim: int) -> Callable[[], None]:
    """Forward + backward of objective ``name`` on fixed random embeddings of ``batch`` rows."""
    objective = OBJECTIVES.build({"name": name, "seed": 0})
    gen = torch.Generator().manual_seed(1)
    leaves = [torch.randn(batch, dim, generator=gen).requires_grad_() for _ in range(4)]
    targets = [F.normalize(torch.randn(batch, dim, generator=gen), dim=1) for _ in range(2)]
    index = torch.arange(batch)

    def run() -> None:
        z = [F.normalize(x, dim=1) for x in leaves[:2]]
        p = [F.normalize(x, dim=1) for x in leaves[2:]]
        out = ViewOutputs(z=z, p=p, t=targets if objective.requirements.target else None, indices=index)
        loss, _ = objective(out, support)
        loss.backward()
        for x in leaves:
            x.grad = None

    return run


def topk_call(support: SupportSet, rows: int, dim: int) -> Callable[[], None]:
    query = F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(2)), dim=1)
    return lambda: support.topk(query, 1)


def sweep(points: Sequence[int], make: Callable[[int], Dict[str, Callable[[], None]]],
          reps: int) -> Dict[str, List[float]]:
    """Median seconds of each contender at each point; all calls interleaved round-robin."""
    fns = {f"{name}@{x}": fn for x in points for name, fn in make(x).items()}
    times = interleaved(fns, reps, warmup=1)
    out: Dict[str, List[float]] = {}
    for key, ts in times.items():
        name = key.split("@")[0]
        out.setdefault(name, []).append(median(ts))
    return out


def fit_line(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float, float]:
    """Least-squares ``y = a + b x``; returns ``(a, b, R^2)``."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    b, a = np.polyfit(xs, ys, 1)
    resid = ys - (a + b * xs)
    ss_tot = float(((ys - ys.mean()) ** 2).sum())
    return float(a), float(b), 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0


def report(title: str, xname: str, points: Sequence[int], med: Dict[str, List[float]], per: int) -> str:
    rows = [[f"{x:,}"] + [f"{1e3 * med[n][i]:.2f}" for n in med] for i, x in enumerate(points)]
    fits = []
    for n, ys in med.items():
        a, b, r2 = fit_line(points, ys)
        # log-log slope ~1 means linear growth once the fixed cost is small against it.
        slope = float(np.polyfit(np.log(points), np.log(ys), 1)[0])
        fits.append([n, f"{1e3 * a:.2f}", f"{1e3 * b * per:.2f}", f"{r2:.3f}", f"{slope:.2f}"])
    return (f"{title}\n\n" + table([xname] + [f"{n} (ms)" for n in med], rows) + "\n\n"
            + table(["contender", "intercept a (ms)", f"slope b (ms per {per:,} {xname})", "R^2 of line",
                     "log-log slope"], fits))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min-pow", type=int, default=12)
    ap.add_argument("--max-pow", type=int, default=17)
    ap.add_argument("--batch", type=int, default=256, help="batch for the |Q| sweep")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--queue-for-batch", type=int, default=65536, help="|Q| for the batch sweep")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: more threads thrash on a shared 2-core machine)")
    ap.add_argument("--smoke", action="store_true", help="tiny setting for tests (a few seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.min_pow, args.max_pow, args.batch, args.batches = 8, 10, 16, [8, 16, 32]
        args.queue_for_batch, args.dim, args.reps = 512, 32, 2
    torch.set_num_threads(args.threads)
    d = args.dim
    print(header("Objective cost vs support-set size and batch size"))
    print(f"setting: D {d}, objective forward + backward on fixed embeddings (no backbone), "
          f"{args.reps} interleaved calls per point, median\n")
    queues = [2 ** p for p in range(args.min_pow, args.max_pow + 1)]

    def by_queue(m: int) -> Dict[str, Callable[[], None]]:
        fns = {n: objective_step(n, full_support(m, d, i), args.batch, d) for i, n in enumerate(OBJECTIVE_NAMES)}
        shared = full_support(m, d, 9)
        fns["topk 2B"] = topk_call(shared, 2 * args.batch, d)
        fns["topk 4B"] = topk_call(shared, 4 * args.batch, d)
        return fns

    med_q = sweep(queues, by_queue, args.reps)
    print(report(f"|Q| sweep (B = {args.batch}):", "|Q|", queues, med_q, 65536))
    print(f"\nload average: {load_average()}\n", flush=True)

    m = args.queue_for_batch

    def by_batch(b: int) -> Dict[str, Callable[[], None]]:
        fns = {n: objective_step(n, full_support(m, d, i), b, d) for i, n in enumerate(OBJECTIVE_NAMES)}
        fns["topk 2B"] = topk_call(full_support(m, d, 9), 2 * b, d)
        return fns

    med_b = sweep(args.batches, by_batch, args.reps)
    print(report(f"batch sweep (|Q| = {m:,}):", "B", args.batches, med_b, 256))
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
