"""Whole-pipeline throughput (read + augment + training step), images/s, two settings.

* ``demo`` -- ``configs/demo.yaml`` (pNNCLR, ResNet-18, 64 px, batch 32, 2 workers) on the
  PCAM part of the sample that ``medssl data sample`` writes (104 training tiles);
* ``pathmnist`` -- ``configs/pathmnist.yaml`` (pNNCLR, ResNet-18 small stem, 28 px) on
  the real ``pathmnist_train_first1000.npz`` with ``--pathmnist-batch`` and 2 workers.

Each setting runs with ``augment.device: cpu`` (per-image augmentation in the DataLoader
workers) and ``augment.device: batch`` (the batched on-device pipeline, here on the CPU
in the main process). Both :class:`medssl.train.loop.Pretrainer` instances are built
first; then rounds of ``--steps`` steps alternate between them (the loader restarts at
epoch ends, as in training), after ``--warmup`` steps each. kNN monitoring, logging and
checkpoints are off. Reports median images/s over ``--rounds`` rounds, of full steps and
of reading + making the views only (the data side's ceiling; no model).

    python scripts/bench_epoch.py --steps 4 --rounds 3 --warmup 1 --pathmnist-batch 64 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, load_average, median, table  # noqa: E402

from medssl.train.config import load_pretrain_config  # noqa: E402
from medssl.train.loop import Pretrainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PATHMNIST = REPO.parent / "shared" / "data" / "medmnist" / "pathmnist_train_first1000.npz"


class Stepper:
    """Runs training steps of a Pretrainer from an endless loop over its loader."""

    def __init__(self, trainer: Pretrainer) -> None:
        self.trainer = trainer
        self.epoch = 0
        self.batches: Iterator[Any] = self._new_epoch()

    def _new_epoch(self) -> Iterator[Any]:
        self.trainer.sampler.set_position(self.epoch, 0)
        if hasattr(self.trainer.train_source, "set_epoch"):
            self.trainer.train_source.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.trainer.loader)

    def run(self, steps: int, train: bool = True) -> int:
        """Run ``steps`` steps (``train=False``: only read and augment, making the views
        as the step would); returns the images consumed."""
        for _ in range(steps):
            try:
                batch = next(self.batches)
            except StopIteration:
                self.batches = self._new_epoch()
                batch = next(self.batches)
            if train:
                self.trainer.train_step(batch)
            else:
                self.trainer._views(batch)
        return steps * self.trainer.cfg.train.batch_size


def settings(args: argparse.Namespace, sample_root: Path) -> Dict[str, List[str]]:
    """Config overrides of each setting (beyond augment.device)."""
    common = ["train.knn_every=0", "train.device=cpu", "train.resume=false",
              f"train.num_workers={args.workers}", "train.max_steps=100000"]
    demo = [f"data.root={sample_root / 'pcam'}", "val_data=null"]
    path = [f"data={{name: medmnist, path: {PATHMNIST}, flag: pathmnist, split: train}}", "val_data=null",
            f"train.batch_size={args.pathmnist_batch}", "support_set.size=1000"]
    out = {"demo": [str(REPO / "configs" / "demo.yaml")] + demo + common,
           "pathmnist": [str(REPO / "configs" / "pathmnist.yaml")] + path + common}
    if args.smoke:
        out["demo"] += ["augment.image_size=32", "model.proj_hidden=64", "model.pred_hidden=64",
                        "model.backbone=resnet10t", "train.batch_size=8"]
        out["pathmnist"] += ["model.proj_hidden=64", "model.pred_hidden=64", "model.backbone=resnet10t"]
    return {k: v for k, v in out.items() if k in args.settings}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", default=["demo", "pathmnist"], choices=["demo", "pathmnist"])
    ap.add_argument("--steps", type=int, default=6, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds per pipeline")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per pipeline first")
    ap.add_argument("--data-factor", type=int, default=4,
                    help="the data-only rounds run this many times --steps batches (they are much faster)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (both pipelines)")
    ap.add_argument("--pathmnist-batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads of the main process (1: more thrash on a shared 2-core machine)")
    ap.add_argument("--smoke", action="store_true", help="tiny setting for tests (a few seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.warmup, args.workers, args.pathmnist_batch, args.data_factor = 1, 1, 1, 0, 16, 1
    torch.set_num_threads(args.threads)
    print(header("Whole-pipeline throughput: CPU workers vs batched augmentation"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="medssl_bench_epoch_") as tmp:
        from medssl.data.sample import write_sample

        write_sample(Path(tmp) / "sample")
        for name, (config, *overrides) in settings(args, Path(tmp) / "sample").items():
            steppers = {}
            for device in ("cpu", "batch"):
                cfg = load_pretrain_config(config, overrides + [f"augment.device={device}",
                                                                f"out_dir={tmp}/{name}_{device}"])
                steppers[device] = Stepper(Pretrainer(cfg, progress=False))
            cfg0 = steppers["cpu"].trainer.cfg
            for s in steppers.values():
                s.run(args.warmup)
            rates: Dict[str, List[float]] = {}
            for _ in range(args.rounds):
                for train in (True, False):
                    for device, s in steppers.items():
                        start = time.perf_counter()
                        n = s.run(args.steps * (1 if train else args.data_factor), train)
                        rates.setdefault(f"{device}/{train}", []).append(n / (time.perf_counter() - start))
            r = {k: median(v) for k, v in rates.items()}
            rows.append([name, f"{cfg0.objective['name']}, {cfg0.model.backbone}, {cfg0.augment.image_size} px, "
                               f"batch {cfg0.train.batch_size}, {len(steppers['cpu'].trainer.dataset)} images",
                         f"{r['cpu/True']:,.0f}", f"{r['batch/True']:,.0f}", f"{r['batch/True'] / r['cpu/True']:.2f}",
                         f"{r['cpu/False']:,.0f}", f"{r['batch/False']:,.0f}"])
            print(f"  {name}: {', '.join(f'{k} {v:,.0f} img/s' for k, v in r.items())} (load {load_average()})",
                  file=sys.stderr, flush=True)
            del steppers
    print(f"{args.rounds} interleaved rounds of {args.steps} steps after {args.warmup} warm-up steps; "
          f"{args.workers} DataLoader workers; main process {args.threads} torch thread(s)\n")
    print(table(["setting", "run", "cpu: full step (img/s)", "batch: full step (img/s)", "batch / cpu",
                 "cpu: data + views only (img/s)", "batch: data + views only (img/s)"], rows))
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
