"""bf16 autocast against float32 on the CPU, for the real training step of shipped configs.

Each contender is a :class:`medssl.train.loop.Pretrainer` built from a shipped config with
``train.amp`` (``off`` | ``bf16``) and ``train.channels_last`` (``true`` | ``false``)
overridden; one batch is drawn from its loader once, and ``train_step`` (views to the
device, forward under autocast, the objective in float32, backward, optimiser, EMA target)
is timed on it, so data loading and augmentation in the DataLoader are left out (they cost
both precisions the same). Steps are interleaved: one step of every contender per round,
``--rounds`` rounds after ``--warmup``; medians, spreads (min-max) and the speed of each
contender against float32 in the default layout are printed as a Markdown table, one per
(config, objective). ``--objectives`` takes several (SimCLR and every neighbour objective).

    python scripts/bench_precision.py --shape bloodmnist --objectives simclr nnclr pnnclr snclr psm --rounds 5
    python scripts/bench_precision.py --shape demo --objectives simclr pnnclr --rounds 4
    python scripts/bench_precision.py --shape pcam --objectives pnnclr --rounds 3
    python scripts/bench_precision.py --shape bloodmnist --objectives pnnclr --probe   # what auto picks

``--probe`` also runs the start-up probe of ``train.amp: auto`` (uncached) on each model and
prints its two timings, its decision and how long it took.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, load_average, median, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "medmnist"
SAMPLE = REPO / "sample_data"

# name -> (config, overrides that point it at data on this machine and set its shape)
SHAPES: Dict[str, Sequence[str]] = {
    # the BloodMNIST config: ResNet-18, small stem, 28 px, batch 128 (the quality benchmark's shape)
    "bloodmnist": ("configs/bloodmnist.yaml", f"data.root={DATA}", "val_data=null", "train.batch_size=128"),
    # the demo: ResNet-18, timm stem, 64 px, batch 32, on the embedded sample
    "demo": ("configs/demo.yaml", "val_data=null"),
    # PCAM's shape (ResNet-50, 96 px, batch 64) on the embedded sample's PCAM files
    "pcam": ("configs/pcam.yaml", f"data.root={SAMPLE / 'pcam'}", "val_data=null"),
    # 224 px, ResNet-18 timm stem, batch 32 (an ImageNet-sized input) on the embedded sample
    "224": ("configs/demo.yaml", "val_data=null", "augment.image_size=224"),
}
CONTENDERS = {"fp32": ("off", "false"), "fp32 channels_last": ("off", "true"),
              "bf16": ("bf16", "false"), "bf16 channels_last": ("bf16", "true")}


def build(shape: str, objective: str, amp: str, channels_last: str, out: Path) -> "object":
    import medssl
    from medssl.train.loop import Pretrainer

    config, *overrides = SHAPES[shape]
    cfg = medssl.load_pretrain_config(REPO / config, [*overrides, f"objective.name={objective}", "train.num_workers=0",
                                                      "train.knn_every=0", f"train.amp={amp}",
                                                      f"train.channels_last={channels_last}", "train.device=cpu",
                                                      f"out_dir={out}"])
    with contextlib.redirect_stderr(io.StringIO()):  # each build prints its thread plan
        trainer = Pretrainer(cfg, progress=False)
    return trainer


def bench(shape: str, objective: str, rounds: int, warmup: int, probe: bool) -> str:
    from medssl.precision import choose_cpu_precision
    from medssl.train.loop import probe_step

    fns, lines = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (amp, cl) in CONTENDERS.items():
            trainer = build(shape, objective, amp, cl, Path(tmp) / name.replace(" ", "_"))
            batch = next(iter(trainer.loader))
            fns[name] = (lambda t=trainer, b=batch: t.train_step(b))
            if probe and name == "fp32 channels_last":  # the shipped layout
                start = time.perf_counter()
                choice = choose_cpu_precision(trainer.model, probe_step(trainer.cfg, trainer.in_chans, True),
                                              {"bench": True}, use_cache=False)
                lines.append(f"probe ({time.perf_counter() - start:.1f} s): {choice.describe()}")
        times = interleaved(fns, reps=rounds, warmup=warmup)
    base = median(times["fp32 channels_last"])
    rows = [[name, f"{median(t) * 1000:.0f}", f"{min(t) * 1000:.0f}-{max(t) * 1000:.0f}",
             f"{base / median(t):.2f}x"] for name, t in times.items()]
    out = table(["contender", "median step (ms)", "min-max (ms)", "speed vs fp32 channels_last (the old default)"],
                rows)
    return "\n".join([f"### {shape}, {objective} (load average {load_average()})", "", out, *lines, ""])


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="bloodmnist")
    p.add_argument("--objectives", nargs="+", default=["simclr", "pnnclr"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: medssl's auto)")
    p.add_argument("--probe", action="store_true", help="also time the start-up probe of train.amp: auto")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(header("bf16 autocast against float32: one training step of a shipped config"))
    for objective in args.objectives:
        print(bench(args.shape, objective, args.rounds, args.warmup, args.probe), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
