"""Neighbour purity over training of the nearest-neighbour objectives (issue 12, item 5).

Reads the cached runs of a ``bench_quality.py`` plan (their ``metrics.jsonl``: the
``nn_purity`` the objectives log, i.e. the fraction of looked-up support-set rows whose
label is the query's) and draws purity against step, one line per row and seed.
Nothing is trained here; rows without a cached run are listed as missing.

    python scripts/quality_purity.py --cache /work/quality_cache --plan ablate-recipe \\
        --rows "nnclr + recipe" "pnnclr + recipe" "snclr + recipe" "psm + recipe" \\
        --out docs/figures/quality_purity_val.png

Purity of a top-1 look-up (NNCLR, pNNCLR) and of a top-k one (SNCLR k=30, PSM k=5) are
not the same quantity: more neighbours per query means lower purity at equal quality.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as bq  # noqa: E402


def purity_curves(cache: Path, plan: str, rows: Optional[Sequence[str]], steps: int, seeds: Sequence[int],
                  data_file: str, dataset: str = "bloodmnist",
                  batch_size: int = bq.BATCH_SIZE) -> Dict[str, List[Dict[str, object]]]:
    """``{row: [{seed, steps: [...], purity: [...]}, ...]}`` for the cached runs; rows
    without any cached run map to an empty list."""
    chosen = [r for r in bq.PLANS[plan] if (rows is None or r.name in rows) and r.kind == "medssl"]
    if rows is not None:
        unknown = sorted(set(rows) - {r.name for r in chosen})
        if unknown:
            raise SystemExit(f"quality_purity: no medssl row {unknown} in plan {plan!r}")
    out: Dict[str, List[Dict[str, object]]] = {r.name: [] for r in chosen}
    for row, run in bq.runs_of(chosen, dataset, data_file, [steps], seeds, batch_size, bq.BACKBONE, bq.IMAGE_SIZE):
        done = bq.Cache(cache).trained(run)
        if done is None:
            continue
        pts = [json.loads(line) for line in (done / "run" / "metrics.jsonl").read_text().splitlines()]
        pts = [p for p in pts if "nn_purity" in p]
        out[row.name].append({"seed": run.seed, "key": run.key(), "steps": [p["step"] for p in pts],
                              "purity": [p["nn_purity"] for p in pts]})
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="/work/quality_cache")
    p.add_argument("--plan", default="ablate-recipe", choices=sorted(bq.PLANS))
    p.add_argument("--rows", nargs="+", default=None)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--batch-size", type=int, default=bq.BATCH_SIZE)
    p.add_argument("--data", default=str(bq.REPO.parent / "shared" / "data" / "medmnist" / "bloodmnist.npz"))
    p.add_argument("--out", required=True, help="figure (.png); the curves go to the same name with .json")
    args = p.parse_args(argv)
    curves = purity_curves(Path(args.cache), args.plan, args.rows, args.steps, args.seeds, args.data,
                            batch_size=args.batch_size)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in curves.items():
        for r in runs:
            ax.plot(r["steps"], r["purity"], marker=".", label=f"{name} (seed {r['seed']})")
    ax.set_xlabel("training step")
    ax.set_ylabel("neighbour purity (same label)")
    ax.set_title(f"{args.plan}, {args.steps} steps: purity of the looked-up rows")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    out.with_suffix(".json").write_text(json.dumps({"command": "python scripts/quality_purity.py "
                                                    + " ".join(argv if argv is not None else sys.argv[1:]),
                                                    "curves": curves}, indent=1))
    for name, runs in curves.items():
        if not runs:
            print(f"{name}: no cached run")
        for r in runs:
            print(f"{name} seed {r['seed']}: purity {r['purity'][0]:.3f} at step {r['steps'][0]} -> "
                  f"{r['purity'][-1]:.3f} at step {r['steps'][-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
