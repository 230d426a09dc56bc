"""Long-budget curves (issue 27): 2 %-label probe and kNN-20 accuracy and neighbour purity
against epochs, one line per row, 95 % t-intervals over seeds; one figure per data set.

Reads what scripts/bench_quality.py cached for a plan (``--no-train``: nothing is trained
or evaluated here that the cache does not hold) and writes

* ``docs/figures/quality_long_budget_<dataset>.png``: three panels (probe@2%, kNN-20,
  purity), x = epochs (steps where no epoch budget was given);
* ``docs/figures/quality_long_budget.json``: per data set, the rows, budgets and seeds, the
  per-seed probe@2% / kNN-20 accuracy and purity, mean and t-interval per row and budget,
  and each row minus ``--paired-against`` (SimCLR) paired by seed with a t-interval. Data
  sets already in the file are kept (run once per data set).

Neighbour purity is the mean ``nn_purity`` the run logged over the last epoch before the
budget (the fraction of looked-up support rows with the query's label, training batches;
a diagnostic, never used by the loss); SimCLR has none.

    python scripts/quality_curves.py --plan long --dataset bloodmnist --split val \\
        --epochs 1 3 10 30 --seeds 0 1 2 --paired-against "medssl simclr"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as bq  # noqa: E402

PANELS = (("probe@2%", "2 %-label probe accuracy"), ("knn@20", "kNN-20 accuracy"), ("purity", "neighbour purity"))
FIGURES = bq.REPO / "docs" / "figures"


def purity_before(run_dir: Path, step: int, window: int) -> Optional[float]:
    """Mean ``nn_purity`` logged at steps ``(step - window, step]`` of a run, or None."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    vals = [r["nn_purity"] for r in map(json.loads, path.read_text().splitlines())
            if "nn_purity" in r and step - window < r["step"] <= step]
    return float(np.mean(vals)) if vals else None


def interval(values: Sequence[float]) -> Dict[str, Any]:
    """Mean, n and (two or more values) the 95 % t-interval of the mean."""
    out: Dict[str, Any] = {"mean": float(np.mean(values)) if len(values) else None, "n": len(values)}
    if len(values) > 1:
        sd, ci = bq.t_interval(values)
        out.update(sd=sd, ci=ci)
    return out


def curves(report: Dict[str, Any], cache: Path, reference: Optional[str]) -> Dict[str, Any]:
    """The JSON record of one data set from a bench_quality report (see the module docstring)."""
    budgets = report["budgets"]
    rows = list(next(iter(report["tables"].values())))
    per_seed: Dict[str, Dict[str, Dict[str, Dict[str, Optional[float]]]]] = {r: {} for r in rows}
    steps = [b["steps"] for b in budgets]
    window = max(1, steps[0] if budgets[0]["epochs"] is None else int(round(steps[0] / budgets[0]["epochs"])))
    for e in report["runs"]:
        if not e["eval"]:
            continue
        d = cache / e["key"] / "run"
        per_seed[e["row"]].setdefault(str(e["steps"]), {})[str(e["run"]["seed"])] = {
            "probe@2%": e["eval"]["probe@2%"]["accuracy"], "knn@20": e["eval"]["knn@20"]["accuracy"],
            "purity": purity_before(d, e["steps"], window)}
    summary: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for row, by_budget in per_seed.items():
        summary[row] = {n: {p: interval([v[p] for v in seeds.values() if v[p] is not None]) for p, _ in PANELS}
                        for n, seeds in by_budget.items()}
    out: Dict[str, Any] = {"dataset": report["dataset"], "split": report["split"], "plan": report["plan"],
                           "schedule": report["schedule"], "command": report["command"], "budgets": budgets,
                           "rows": rows, "seeds": sorted({e["run"]["seed"] for e in report["runs"]}),
                           "per_seed": per_seed, "summary": summary, "machine": report["machine"]}
    if reference is not None:
        out["paired_against"] = reference
        out["paired"] = {row: {str(n): bq.paired(report["runs"], row, reference, n) for n in steps}
                         for row in rows if row != reference}
    return out


def draw(record: Dict[str, Any], path: Path) -> Path:
    """One figure of three panels for one data set's record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = record["budgets"]
    in_epochs = all(b["epochs"] is not None for b in budgets)
    x_of = {str(b["steps"]): (b["epochs"] if in_epochs else b["steps"]) for b in budgets}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    colour = {row: f"C{i % 10}" for i, row in enumerate(record["rows"])}  # one colour per row in every panel
    ticks = sorted(x_of.values())
    for ax, (proto, label) in zip(axes, PANELS):
        for row in record["rows"]:
            pts = [(x_of[n], s[proto]) for n, s in record["summary"].get(row, {}).items()
                   if n in x_of and s[proto]["mean"] is not None]
            if not pts:
                continue
            pts.sort(key=lambda t: t[0])
            xs = [p[0] for p in pts]
            means = [p[1]["mean"] for p in pts]
            err = [[m - p[1]["ci"][0] if "ci" in p[1] else 0.0 for m, p in zip(means, pts)],
                   [p[1]["ci"][1] - m if "ci" in p[1] else 0.0 for m, p in zip(means, pts)]]
            ax.errorbar(xs, means, yerr=err, marker="o", capsize=3, label=row, color=colour[row])
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("epochs" if in_epochs else "steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # nothing cached yet: an empty figure, no legend
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{record['dataset']} ({record['split']}): {record['schedule']}; 95 % t-intervals over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_record(record: Dict[str, Any], path: Path) -> Path:
    """Merge one data set's record into the JSON file (other data sets kept)."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("datasets", {})[record["dataset"]] = record
    data["about"] = ("issue 27: per data set, rows x budgets x seeds; probe@2% and knn@20 accuracy, neighbour "
                     "purity; paired differences against the reference row with 95 % t-intervals over seeds")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=str(FIGURES / "quality_long_budget.json"))
    p.add_argument("--figure", default=None, help="default: docs/figures/quality_long_budget_<dataset>.png")
    args, rest = p.parse_known_args(argv)
    bench_args = bq.parse_args([*rest, "--no-train"])
    report = bq.run_plan(bench_args, log=lambda s: print(s, file=sys.stderr))
    record = curves(report, Path(bench_args.cache), bench_args.paired_against)
    write_record(record, Path(args.json))
    figure = Path(args.figure) if args.figure else FIGURES / f"quality_long_budget_{record['dataset']}.png"
    draw(record, figure)
    print(f"quality_curves: {args.json}, {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
