"""What a label-efficiency panel costs against one `medssl transfer` call per fraction.

Three ways to get the same numbers (every fraction x seed x target), each a real
`python -m medssl transfer` subprocess, timed wall clock (start-up included, as a user
pays it):

* ``separate``: one call per (target, fraction), each into its own fresh ``--out``
  (each embeds the target again) -- what a user does without a panel;
* ``one call + extra probes``: per target, the same calls into *one* ``--out``: the first
  embeds, every later one hits the feature cache and pays only its probes (and start-up,
  hashing the data, the per-seed bootstrap CIs and the report) -- the budget a panel has
  to meet (issue 30: at most 1.3x this);
* ``panel``: one call with every target and fraction.

The encoder is an exported random-init ``--backbone`` (default resnet18, 28 px, no small
stem: the cost of a real encoder's forward pass, without needing a pretraining run), or
``--encoder PATH``.

    python scripts/bench_panel.py --data /work/shared/data/medmnist/bloodmnist.npz \\
        /work/shared/data/medmnist/pneumoniamnist.npz --fractions 0.01 0.02 0.05 0.1 1.0 --seeds 3
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
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, table  # noqa: E402


def export_random(out: Path, backbone: str, size: int, small: bool) -> Path:
    import torch

    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    torch.manual_seed(0)
    enc = build_backbone(backbone, in_chans=3, image_size=size, small_input_stem=small)
    export_encoder(enc, out / "encoder.safetensors", backbone=backbone, in_chans=3, image_size=size,
                   small_input_stem=small, mean=[0.5] * 3, std=[0.25] * 3)
    return out


def transfer(args: argparse.Namespace, encoder: Path, data: List[str], fractions: List[str], out: Path) -> float:
    cmd = [sys.executable, "-m", "medssl", "transfer", "--encoder", str(encoder), "--data", *data,
           "--label-fraction", *fractions, "--seeds", str(args.seeds), "--protocol", args.protocol,
           "--device", args.device, "--out", str(out), "--no-progress", "--no-plots",
           f"report.n_boot={args.n_boot}", "report.tsne=false"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return took


def main(argv: List[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", required=True, help="target .npz files (MedMNIST layout)")
    p.add_argument("--fractions", nargs="+", default=["0.01", "0.02", "0.05", "0.1", "1.0"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--protocol", default="linear", choices=("linear", "knn"))
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--encoder", help="an exported encoder (default: a random-init --backbone)")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--small-stem", action="store_true")
    p.add_argument("--work", help="scratch folder (default: a temporary one, removed afterwards)")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_panel_"))
    work.mkdir(parents=True, exist_ok=True)
    encoder = Path(args.encoder) if args.encoder else export_random(work / "encoder", args.backbone,
                                                                     args.image_size, args.small_stem)
    print(header("Label-efficiency panel against one medssl transfer call per fraction"))
    print(f"targets: {', '.join(Path(d).name for d in args.data)}; fractions {' '.join(args.fractions)}; "
          f"{args.seeds} seeds; {args.protocol}; n_boot {args.n_boot}; encoder "
          f"{args.encoder or f'random-init {args.backbone} at {args.image_size} px'}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n", flush=True)
    times: Dict[str, float] = {"separate": 0.0, "one call + extra probes": 0.0}
    first: Dict[str, float] = {}
    for d in args.data:
        name = Path(d).stem
        for f in args.fractions:
            times["separate"] += transfer(args, encoder, [d], [f], work / "separate" / f"{name}_{f}")
            took = transfer(args, encoder, [d], [f], work / "reuse" / name)
            first.setdefault(name, took)
            times["one call + extra probes"] += took
            print(f"  {name} {f}: done", flush=True)
    times["panel"] = transfer(args, encoder, list(args.data), list(args.fractions), work / "panel")
    budget = times["one call + extra probes"]
    rows = [[k, f"{v:.1f}", f"{v / budget:.2f}"] for k, v in times.items()]
    print(table(["way", "wall s", "x (one call + extra probes)"], rows))
    print(f"\nfirst (embedding) call per target: {', '.join(f'{k} {v:.1f} s' for k, v in first.items())}")
    rep = json.loads((work / "panel" / "report.json").read_text())
    print(f"panel rows: {len(rep['rows'])}; feature cache: {sorted(set(rep['feature_cache'].values()))}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
