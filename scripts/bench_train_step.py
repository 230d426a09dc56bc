"""NNCLR training-step time: medssl vs lightly, same backbone, heads, batch and queue.

medssl: ``build_ssl_model`` (projector F-H-H-D with BatchNorm, predictor D-P-D) +
``NNCLR`` objective + ``SupportSet`` of ``--queue`` rows (both views in one backbone call).
lightly: the same medssl/timm backbone instance type, ``NNCLRProjectionHead(F, H, D)``,
``NNCLRPredictionHead(D, P, D)``, ``NNMemoryBankModule((queue, D))`` and
``NTXentLoss(0.1)``, stepped as in lightly's NNCLR example (one forward per view).
Both start from the same seed, use SGD (lr 0.06, momentum 0.9) on random images and
full queues; steps alternate between the two in one process and the medians of
``--iters`` steps are compared.

    python scripts/bench_train_step.py --image-size 32 --batch 64 --queue 8192 --iters 10 --threads 1 --split-views
    python scripts/bench_train_step.py --image-size 28 --small-stem --batch 128 --queue 11959 --threads 2 --bf16
    python scripts/bench_train_step.py --image-size 96 --batch 256 --queue 65536 --iters 20 --warmup 5 --device cuda

``--device cuda`` runs both on the GPU in float32 (neither side's autocast), synchronised
around every timed step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, load_average, median, table  # noqa: E402

from medssl.models import build_backbone, build_ssl_model  # noqa: E402
from medssl.objectives.nnclr import NNCLR  # noqa: E402
from medssl.objectives.support_set import SupportSet  # noqa: E402


def medssl_step(args: argparse.Namespace, views: List[torch.Tensor], split_views: bool = False,
                channels_last: bool = False, bf16: bool = False) -> Callable[[], float]:
    """One medssl NNCLR step (forward, loss with look-up and enqueue, backward, SGD).

    ``split_views`` runs the model once per view (``per_view_bn``), as lightly's recipe
    does, instead of on both views concatenated (medssl's default): this isolates the cost
    of that choice.
    ``channels_last`` converts the model once and the views every step, as ``medssl
    pretrain`` does by default (``train.channels_last``).
    ``bf16`` runs the model's forward under bf16 autocast and the objective in float32, as
    ``medssl pretrain`` does when ``train.amp`` is (or ``auto`` picks) bf16.
    """
    torch.manual_seed(0)
    objective = NNCLR(tau=0.1)
    model = build_ssl_model(build_backbone(args.backbone, image_size=args.image_size,
                                           small_input_stem=args.small_stem), objective,
                            proj_hidden=args.proj_hidden, proj_dim=args.proj_dim, pred_hidden=args.pred_hidden,
                            per_view_bn=split_views)
    model = model.to(args.device)
    support = SupportSet(args.queue, args.proj_dim).to(args.device)
    support.enqueue(F.normalize(torch.randn(args.queue, args.proj_dim, device=args.device), dim=1))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.online_parameters(), lr=0.06, momentum=0.9)
    index = torch.arange(views[0].shape[0], device=args.device)
    model.train()

    def step() -> float:
        batch = [v.contiguous(memory_format=torch.channels_last) for v in views] if channels_last else views
        with torch.autocast(args.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(batch, indices=index)
        loss, _ = objective(out, support)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def lightly_step(args: argparse.Namespace, views: List[torch.Tensor], bf16: bool = False) -> Callable[[], float]:
    """One step of lightly's NNCLR recipe with heads of the same widths (``bf16``: its
    forward and loss under bf16 autocast, as a user would wrap them)."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead, NNMemoryBankModule

    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, image_size=args.image_size, small_input_stem=args.small_stem)
    projector = NNCLRProjectionHead(backbone.num_features, args.proj_hidden, args.proj_dim)
    predictor = NNCLRPredictionHead(args.proj_dim, args.pred_hidden, args.proj_dim)
    model = nn.ModuleDict({"backbone": backbone, "projector": projector, "predictor": predictor}).train()
    model = model.to(args.device)
    bank = NNMemoryBankModule(size=(args.queue, args.proj_dim)).to(args.device)  # full of random unit rows
    criterion = NTXentLoss(temperature=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9)

    def forward(x: torch.Tensor):
        z = projector(backbone(x))
        return z, predictor(z)

    def step() -> float:
        with torch.autocast(args.device.type, dtype=torch.bfloat16, enabled=bf16):
            z0, p0 = forward(views[0])
            z1, p1 = forward(views[1])
            nn0 = bank(z0.detach(), update=False)
            nn1 = bank(z1.detach(), update=True)
            loss = 0.5 * (criterion(nn0, p1) + criterion(nn1, p0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64, help="images per step (two views each)")
    ap.add_argument("--queue", type=int, default=8192)
    ap.add_argument("--proj-hidden", type=int, default=2048)
    ap.add_argument("--proj-dim", type=int, default=256)
    ap.add_argument("--pred-hidden", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=10, help="timed steps of each, interleaved")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: more threads thrash on a shared 2-core machine)")
    ap.add_argument("--split-views", action="store_true",
                    help="also time medssl with one model call per view (lightly's pattern)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (both sides on the GPU, float32)")
    ap.add_argument("--small-stem", action="store_true",
                    help="the small-input stem (3x3 conv, no max-pool) of the MedMNIST configs")
    ap.add_argument("--bf16", action="store_true",
                    help="also time both sides under bf16 autocast (medssl: forward only, as pretrain runs it)")
    ap.add_argument("--smoke", action="store_true", help="tiny setting for tests (a few seconds)")
    args = ap.parse_args(argv)
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here")
    if args.smoke:
        args.backbone, args.image_size, args.batch, args.queue = "resnet18", 16, 8, 256
        args.proj_hidden, args.pred_hidden, args.iters, args.warmup = 64, 64, 1, 1
    torch.set_num_threads(args.threads)
    print(header("NNCLR training step: medssl vs lightly"))
    print(f"setting: {args.backbone}, {args.image_size} px, batch {args.batch} x 2 views, |Q| {args.queue}, "
          f"projector {args.proj_hidden}-{args.proj_hidden}-{args.proj_dim}, predictor {args.pred_hidden}, "
          f"{args.iters} interleaved steps after {args.warmup} warm-up, {device_name(args.device)}\n")
    gen = torch.Generator().manual_seed(0)
    views = [torch.rand(args.batch, 3, args.image_size, args.image_size, generator=gen).to(args.device)
             for _ in range(2)]
    steps = {"medssl": medssl_step(args, views), "lightly": lightly_step(args, views),
             "medssl, channels_last (pretrain's default)": medssl_step(args, views, channels_last=True)}
    if args.bf16:
        steps["medssl, channels_last, bf16 autocast"] = medssl_step(args, views, channels_last=True, bf16=True)
        steps["lightly, bf16 autocast"] = lightly_step(args, views, bf16=True)
    if args.split_views:
        steps["medssl, one forward per view"] = medssl_step(args, views, split_views=True)
    sync = (lambda: torch.cuda.synchronize(args.device)) if args.device.type == "cuda" else None
    times = interleaved(steps, args.iters, warmup=args.warmup, sync=sync)
    base = median(times["lightly"])
    rows = [[k, f"{1e3 * median(ts):.0f}", f"{1e3 * min(ts):.0f}", f"{base / median(ts):.2f}x"]
            for k, ts in times.items()]
    print(table(["implementation", "median (ms/step)", "min (ms/step)", "speed vs lightly (median)"], rows))
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
