"""The panel's outputs: ``report.json``, ``report.md``, ``predictions.csv`` and the
label-efficiency figure (one row per target x point x feature source).

Every number is the mean over seeds on the whole test split; its 95 % CI is the
stratified percentile bootstrap over test images of that mean (:mod:`medssl.eval.seed_bootstrap`),
and ``sd`` the sample sd across seeds. ``vs`` gives, for the encoder's rows, the paired
difference to each baseline on the same resamples, subsets and seeds.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from medssl.eval.panel_config import Point
from medssl.eval.seed_bootstrap import bootstrap_seed_means, paired_summary, percentile_ci

FORMAT = "medssl-panel-report/1"
METRICS = ("auc", "accuracy", "balanced_accuracy")
LABELS = {"auc": "AUC", "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy"}
PREDICTIONS = "predictions.csv"
FIGURE = "label_efficiency.png"


def _ci(values: np.ndarray) -> List[Optional[float]]:
    lo, hi, _ = percentile_ci(values)
    return [None if np.isnan(lo) else lo, None if np.isnan(hi) else hi]


def target_rows(cfg: Any, result: Any, sources: Sequence[Any], points: Sequence[Point]) -> List[Dict[str, Any]]:
    """The report rows of one scored target (``medssl.eval.panel.TargetResult``)."""
    from medssl.eval.transfer import aggregate

    rows = []
    for point in points:
        runs = {s.name: result.runs[(s.name, point)] for s in sources}
        groups = [[r["scores"] for r in runs[s.name]] for s in sources]
        _, per_seed, boots = bootstrap_seed_means(result.y_test, groups, result.info["task"], cfg.report.n_boot,
                                                  cfg.seed)
        for gi, source in enumerate(sources):
            agg, notes = aggregate(runs[source.name])
            metrics: Dict[str, Any] = {m: {**agg[m], "ci": _ci(boots[m][gi])} for m in METRICS}
            metrics.update({m: agg[m] for m in ("macro_f1", "ece", "brier")})
            sizes = [int(r["subset"]["size"]) for r in runs[source.name]]
            row = {"target": result.name, "source": source.name, "point": {"kind": point.kind, "value": point.value,
                                                                          "label": point.label},
                   "n_labels": float(np.mean(sizes)), "n_labels_per_seed": sizes, "metrics": metrics,
                   "subset_files": [r["subset"]["file"] for r in runs[source.name]],
                   "weight_decay_per_seed": [r["metrics"]["protocol"].get("weight_decay") for r in runs[source.name]],
                   "notes": [f"{point.label}: {n}" for n in notes],
                   "warnings": sorted({f"{point.label}, seed {r['seed']}: {w}" for r in runs[source.name]
                                       for w in r["metrics"].get("warnings", [])})}
            if gi == 0 and len(sources) > 1:
                row["vs"] = {b.name: {m: paired_summary(boots[m][0], boots[m][bj], per_seed[m][0], per_seed[m][bj])
                                      for m in METRICS} for bj, b in enumerate(sources) if bj > 0}
            rows.append(row)
    return rows


def _details(results: Sequence[Any], sources: Sequence[Any], points: Sequence[Point]) -> Dict[str, Any]:
    if not results:
        return {}
    d = dict(results[0].runs[(sources[0].name, points[0])][0]["metrics"].get("protocol", {}))
    d.pop("selection_table", None)
    return d


def protocol_text(cfg: Any, points: Sequence[Point], sources: Sequence[Any]) -> str:
    """The panel's protocol in one paragraph."""
    how = ("a linear probe (L-BFGS logistic regression on standardised frozen features, weight decay chosen per "
           "seed on a held-out 20 % of the subset unless fixed)" if cfg.protocol == "linear" else
           f"a weighted kNN on frozen features (cosine, k = {cfg.knn.k}, T = {cfg.knn.temperature})")
    return (f"Each feature source ({', '.join(s.title for s in sources)}) is scored with {how} at each point of the "
            f"label axis ({', '.join(p.label for p in points)}). Per target, point and seed ({cfg.seed_list()}) one "
            f"label subset is drawn from the labelled '{cfg.split_train}' split (stratified, at least "
            f"{cfg.min_per_class} per class for fractions; docs/evaluation.md), from the seed and the target's labels "
            f"only, so every source (and every encoder evaluated with the same seeds) is trained on the same images. "
            f"Scored on every image of the '{cfg.split_test}' split. Numbers are the mean over seeds (± sample sd "
            f"across seeds); 95 % CIs are the stratified percentile bootstrap over test images ({cfg.report.n_boot} "
            f"resamples) of that mean; a difference between sources is paired (same resamples, subsets and seeds).")


def build_panel_report(cfg: Any, results: Sequence[Any], failed: List[Dict[str, str]], sources: Sequence[Any],
                       points: Sequence[Point], cache_hits: Mapping[str, str]) -> Dict[str, Any]:
    """The ``report.json`` dict of a panel (docs/transfer.md, "Label-efficiency panels")."""
    from medssl.config import to_dict
    from medssl.eval.report import versions

    rows = [row for r in results for row in target_rows(cfg, r, sources, points)]
    enc = sources[0].provenance
    return {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "protocol": {"name": cfg.protocol, "seeds": cfg.seed_list(), "min_per_class": cfg.min_per_class,
                     "split_train": cfg.split_train, "split_test": cfg.split_test,
                     "points": [{"kind": p.kind, "value": p.value, "label": p.label} for p in points],
                     "details": _details(results, sources, points), "text": protocol_text(cfg, points, sources)},
        "ci": {"method": "stratified percentile bootstrap over test images of the mean over seeds",
               "level": 0.95, "n_boot": cfg.report.n_boot, "seed": cfg.seed,
               "differences": "paired: the same resamples, label subsets and seeds for both sides"},
        "encoder": {"path": enc.get("path"), "sha256": enc.get("sha256"), "encoder_json": enc.get("encoder_json")},
        "sources": [{"name": s.name, "title": s.title, "provenance": s.provenance} for s in sources],
        "targets": [r.info for r in results],
        "failed_targets": failed,
        "rows": rows,
        "warnings": [w for r in results for w in r.warnings],
        "feature_cache": dict(cache_hits),
        "predictions": PREDICTIONS,
        "plots": {},
        "config": to_dict(cfg),
    }


def _cell(entry: Mapping[str, Any]) -> str:
    if entry.get("mean") is None:
        return "n/a"
    ci = entry.get("ci") or [None, None]
    band = f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci[0] is not None else ""
    return f"{entry['mean']:.3f}{band} ± {entry['sd']:.3f}"


def difference_cell(entry: Mapping[str, Any]) -> str:
    """``+0.012 (-0.003 to +0.027)``: a paired difference and its CI, for Markdown tables."""
    if entry.get("difference") is None:
        return "n/a"
    ci = entry["ci"]
    band = f" ({ci[0]:+.3f} to {ci[1]:+.3f})" if ci[0] is not None else ""
    return f"{entry['difference']:+.3f}{band}"


def render_panel_markdown(report: Mapping[str, Any]) -> str:
    """``report.md`` of a panel: one table per target, then differences, figure, notes."""
    p = report["protocol"]
    titles = {s["name"]: s["title"] for s in report["sources"]}
    lines = [f"# Label-efficiency panel: {p['name']}", "",
             f"Targets: {', '.join(t['name'] for t in report['targets']) or 'none scored'}; label axis: "
             f"{', '.join(x['label'] for x in p['points'])}; seeds: {', '.join(map(str, p['seeds']))}.", "",
             "Cells: mean over seeds (95 % CI: bootstrap over test images of that mean) ± sd across seeds.", ""]
    for t in report["targets"]:
        rows = [r for r in report["rows"] if r["target"] == t["name"]]
        lines += [f"## {t['name']}", "", f"{t['task']}, {t['num_classes']} classes ({', '.join(t['class_names'])}); "
                  f"{t['n_train']} '{t['split_train']}' images to draw labels from, {t['n_test']} "
                  f"'{t['split_test']}' images scored.", "",
                  "| Features | Labels | Labelled images | " + " | ".join(LABELS[m] for m in METRICS) + " |",
                  "|---|---|---:|" + "---|" * len(METRICS)]
        order = list(titles)
        for r in sorted(rows, key=lambda r: (order.index(r["source"]), r["n_labels"])):
            lines.append(f"| {titles[r['source']]} | {r['point']['label']} | {r['n_labels']:g} | "
                         + " | ".join(_cell(r["metrics"][m]) for m in METRICS) + " |")
        vs_rows = [r for r in rows if r.get("vs")]
        if vs_rows:
            lines += ["", "What the encoder adds (encoder minus baseline, paired; 95 % CI):", "",
                      "| Labels | Baseline | " + " | ".join(LABELS[m] for m in METRICS) + " |",
                      "|---|---|" + "---|" * len(METRICS)]
            for r in sorted(vs_rows, key=lambda r: r["n_labels"]):
                for name, d in r["vs"].items():
                    lines.append(f"| {r['point']['label']} | {titles[name]} | "
                                 + " | ".join(difference_cell(d[m]) for m in METRICS) + " |")
        lines.append("")
    if report["plots"]:
        lines += ["## Figure", ""] + [f"![{k}]({v})" for k, v in report["plots"].items()] + [""]
    if report["failed_targets"]:
        lines += ["## Failed targets", ""] + [f"- **{f['target']}** (`{f['data']}`): {f['error']}"
                                                for f in report["failed_targets"]] + [""]
    notes = report["warnings"] + sorted({f"{r['target']}, {titles[r['source']]}, {w}" for r in report["rows"]
                                         for w in r["warnings"] + r["notes"]})
    if notes:
        lines += ["## Notes and warnings", ""] + [f"- {w}" for w in notes] + [""]
    enc = report["encoder"]
    lines += ["## Protocol", "", p["text"], "", "## Per-image predictions", "",
              f"`{report['predictions']}`: one row per target, feature source, point, seed and test image "
              "(columns `target`, `source`, `label_fraction`, `labels_per_class`, `n_labels`, then those of a "
              "single transfer run; "
              "docs/transfer.md).", "", "## Provenance", "",
              f"- encoder: `{enc['path']}` (sha256 `{str(enc['sha256'])[:16]}…`)",
              f"- versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}; {report['created']}", ""]
    return "\n".join(lines)


def write_predictions_table(path: Path, results: Sequence[Any], sources: Sequence[Any],
                            points: Sequence[Point]) -> Path:
    """``predictions.csv`` of every probe; targets with other classes leave other columns empty."""
    from medssl.eval.predictions import prediction_rows

    prefix = ["target", "source", "label_fraction", "labels_per_class", "n_labels"]
    header: List[str] = []
    blocks = []
    for r in results:
        for s in sources:
            for point in points:
                for run in r.runs[(s.name, point)]:
                    head, rows = prediction_rows(run["seed"], r.info["split_test"], r.y_test, run["scores"],
                                                 r.info["task"], r.info["class_names"])
                    header += [h for h in head if h not in header]
                    frac, count = (point.value, "") if point.kind == "fraction" else ("", int(point.value))
                    blocks.append(([r.name, s.name, frac, count, int(run["subset"]["size"])], head, rows))
    from medssl.fileio import atomic_write

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(prefix + header)
            for lead, head, rows in blocks:
                where = [head.index(h) if h in head else None for h in header]
                w.writerows(lead + ["" if i is None else row[i] for i in where] for row in rows)

    return atomic_write(path, write, "the predictions")


def write_panel_report(cfg: Any, out: Path, results: Sequence[Any], failed: List[Dict[str, str]],
                       sources: Sequence[Any], points: Sequence[Point], cache_hits: Mapping[str, str]
                       ) -> Dict[str, Any]:
    """Build and write everything into ``out``; returns the report dict."""
    report = build_panel_report(cfg, results, failed, sources, points, cache_hits)
    write_predictions_table(out / PREDICTIONS, results, sources, points)
    if cfg.report.plots and report["rows"]:
        from medssl.eval.panel_plots import curves_from_rows, plot_label_efficiency

        titles = {s["name"]: s["title"] for s in report["sources"]}
        plot_label_efficiency(curves_from_rows(report["rows"], titles), out / FIGURE,
                              note=f"{cfg.protocol}; mean over seeds {cfg.seed_list()}, 95 % CI band")
        report["plots"] = {"label_efficiency": FIGURE}
    from medssl.fileio import atomic_write_text  # a full disk: one line, never a torn report

    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=str), "the report")
    atomic_write_text(out / "report.md", render_panel_markdown(report), "the report")
    return report
