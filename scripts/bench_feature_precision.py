"""Feature extraction in float32 against bf16 autocast: speed, and whether the probes agree.

One exported encoder, one MedMNIST file: features of the train and test splits are
computed twice (``medssl.embed(..., precision="off" | "bf16")``), timed, and scored by the
same linear probe (all train labels, one fixed weight decay, so the only difference is the
features) and kNN-20; the table gives AUC and accuracy of each and their differences.
The rule of ``precision: auto`` keeps bf16 for feature extraction only where it is faster;
this checks that the metrics it feeds agree (issue 35: AUC within 0.002).

    python scripts/bench_feature_precision.py --encoder RUN_DIR --data ../shared/data/medmnist/bloodmnist.npz \\
        --train-split train --test-split val
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, load_average, table  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", required=True, help="a run directory or encoder.safetensors")
    p.add_argument("--data", required=True, help="a MedMNIST .npz file")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="val")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    args = p.parse_args(argv)

    import numpy as np

    import medssl
    from medssl.eval.knn import knn_evaluate
    from medssl.eval.linear import linear_probe

    print(header("feature extraction: float32 against bf16 autocast"))
    model, preprocess = medssl.load_encoder(args.encoder)
    spec = {"name": "medmnist", "path": args.data}
    train = medssl.open_dataset({**spec, "split": args.train_split})
    test = medssl.open_dataset({**spec, "split": args.test_split})
    feats: Dict[str, Dict[str, np.ndarray]] = {}
    seconds: Dict[str, float] = {}
    for precision in ("off", "bf16"):
        start = time.perf_counter()
        xtr, ytr = medssl.embed(model, train, preprocess, batch_size=args.batch_size, precision=precision)
        xte, yte = medssl.embed(model, test, preprocess, batch_size=args.batch_size, precision=precision)
        seconds[precision] = time.perf_counter() - start
        feats[precision] = {"xtr": xtr, "ytr": ytr.reshape(-1), "xte": xte, "yte": yte.reshape(-1)}
    rows, scores = [], {}
    for precision, f in feats.items():
        lin = linear_probe(f["xtr"], f["ytr"], f["xte"], f["yte"], "multiclass", weight_decay=args.weight_decay)
        knn = knn_evaluate(f["xtr"], f["ytr"], f["xte"], f["yte"], "multiclass", k=20)
        lm, km = lin.metrics, knn
        scores[precision] = (lm["auc"], lm["accuracy"], km["auc"], km["accuracy"])
        n = len(f["ytr"]) + len(f["yte"])
        rows.append([("float32" if precision == "off" else "bf16"), f"{n / seconds[precision]:.0f}",
                     *(f"{v:.4f}" for v in scores[precision])])
    diff = [b - a for a, b in zip(scores["off"], scores["bf16"])]
    rows.append(["bf16 - float32", f"{seconds['off'] / seconds['bf16']:.2f}x", *(f"{d:+.4f}" for d in diff)])
    print(table(["features", "img/s", "probe AUC", "probe acc", "kNN-20 AUC", "kNN-20 acc"], rows))
    cos = (feats["off"]["xte"] * feats["bf16"]["xte"]).sum(1) / (
        np.linalg.norm(feats["off"]["xte"], axis=1) * np.linalg.norm(feats["bf16"]["xte"], axis=1))
    print(f"\ncosine of each test image's two feature vectors: min {cos.min():.5f}, median {np.median(cos):.5f}")
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
