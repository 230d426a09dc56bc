"""``medssl report A B [C ...]`` on label-efficiency panels: overlaid curves, paired
differences and labels saved.

The first panel is the reference. For every other panel and every (target, point) both
hold, the difference ``other - reference`` of each metric's seed mean is computed from the
two ``predictions.csv`` files, with a *paired bootstrap over test images*: the same
resamples of the test split (drawn as the panels' own CIs are) are applied to both
encoders' predictions of every seed, and the percentile interval of the difference of
the seed means is its 95 % CI; the per-seed differences (same subset, same seed) give
the spread over seeds. Pairing is checked, not assumed: the same seeds, the same target
content (sha256 of its files) and the same label subsets (index files), else that row is
left out with a warning.

"Labels saved": on each encoder's curve (mean over seeds against labelled images, the
fraction points, or the labels-per-class points of a panel without fractions; points with
the same count averaged) the labels needed to reach a score are found by linear
interpolation in log10(labels) between the first point at or above it and the point
before; at or above the first point it is that point's count, and a score the curve never
reaches within the panel is "not reached".
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medssl.errors import DataError
from medssl.eval.panel_report import FORMAT, LABELS, METRICS
from medssl.eval.seed_bootstrap import bootstrap_seed_means, paired_summary

Key = Tuple[str, str, float]  # target, point kind, point value


def is_panel_report(path: Path) -> bool:
    """Whether ``path`` (a directory or its report.json) holds a panel report."""
    f = Path(path) / "report.json" if Path(path).is_dir() else Path(path)
    try:
        return json.loads(f.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def load_panel(path: Path) -> Dict[str, Any]:
    """A panel's report.json (DataError naming the file when it is not one)."""
    p = Path(path)
    f = p / "report.json" if p.is_dir() else p
    try:
        body = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {f} ({exc}); pass a directory written by a `medssl transfer` panel") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise DataError(f"{f} is not a label-efficiency panel report (format {body.get('format')!r}, expected "
                        f"{FORMAT!r}); `medssl report` compares panels with panels and single runs with single runs")
    for key in ("rows", "targets", "protocol", "sources", "predictions"):
        if key not in body:
            raise DataError(f"{f} has no {key!r}: it is incomplete; run the panel again")
    return body


def _key(row: Dict[str, Any]) -> Key:
    return row["target"], row["point"]["kind"], float(row["point"]["value"])


def read_predictions(folder: Path, report: Dict[str, Any], source: str = "encoder"
                     ) -> Dict[Tuple[Key, int], Tuple[np.ndarray, np.ndarray]]:
    """``{((target, kind, value), seed): (y_true, scores [N, C])}`` of one source, rows in
    test-index order, from a panel's predictions.csv."""
    from medssl.eval.predictions import _column_names

    info = {t["name"]: t for t in report["targets"]}
    cols = {name: _column_names(t["class_names"]) for name, t in info.items()}
    acc: Dict[Tuple[Key, int], List[Tuple[int, Any, List[float]]]] = {}
    path = folder / report["predictions"]
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["source"] != source or row["target"] not in info:
                continue
            t = info[row["target"]]
            kind, value = ("fraction", float(row["label_fraction"])) if row["label_fraction"] else (
                "per_class", float(row["labels_per_class"]))
            c = cols[row["target"]]
            truth: Any = [int(row[f"true_{n}"]) for n in c] if t["task"] == "multilabel" else int(row["true_label"])
            acc.setdefault(((row["target"], kind, value), int(row["seed"])), []).append(
                (int(row["index"]), truth, [float(row[f"score_{n}"]) for n in c]))
    out = {}
    for k, items in acc.items():
        items.sort(key=lambda it: it[0])
        out[k] = (np.asarray([it[1] for it in items]), np.asarray([it[2] for it in items], dtype=np.float64))
    return out


def labels_to_reach(curve: Sequence[Tuple[float, float]], score: float) -> Optional[float]:
    """Labels a curve ``[(n, mean)]`` needs to reach ``score`` (see the module docstring)."""
    pts: Dict[float, List[float]] = {}
    for n, m in curve:
        pts.setdefault(float(n), []).append(float(m))
    xs = sorted(pts)
    ys = [float(np.mean(pts[x])) for x in xs]
    for i, (n, m) in enumerate(zip(xs, ys)):
        if m >= score:
            if i == 0 or m == ys[i - 1]:
                return n
            t = (score - ys[i - 1]) / (m - ys[i - 1])
            return float(10 ** (math.log10(xs[i - 1]) + t * (math.log10(n) - math.log10(xs[i - 1]))))
    return None


def _curve(report: Dict[str, Any], target: str, metric: str) -> List[Tuple[float, float]]:
    """The encoder's curve on ``target``: its fraction points, or its per-class points when
    the panel has no fractions (the two sampling rules are not mixed on one curve)."""
    rows = [r for r in report["rows"] if r["source"] == "encoder" and r["target"] == target
            and r["metrics"][metric]["mean"] is not None]
    kind = "fraction" if any(r["point"]["kind"] == "fraction" for r in rows) else "per_class"
    return [(r["n_labels"], r["metrics"][metric]["mean"]) for r in rows if r["point"]["kind"] == kind]


def labels_saved(ref: Dict[str, Any], other: Dict[str, Any], target: str, metric: str) -> Dict[str, Any]:
    """Each encoder's best score on ``target`` (``best``, first reached at ``at_labels``), the
    labels the other encoder needs to reach it (``other_needs``, None: not within the panel)
    and ``other_saves = at_labels - other_needs`` (negative: the other needs more)."""
    out: Dict[str, Any] = {}
    for side, mine, theirs in (("reference", ref, other), ("other", other, ref)):
        curve = _curve(mine, target, metric)
        if not curve:
            out[side] = None
            continue
        best = max(m for _, m in curve)
        at = min(n for n, m in curve if m == best)
        need = labels_to_reach(_curve(theirs, target, metric), best)
        out[side] = {"best": best, "at_labels": at, "other_needs": need,
                     "other_saves": None if need is None else at - need}
    return out


def _pairing_issue(ref_dir: Path, ref: Dict[str, Any], o_dir: Path, other: Dict[str, Any], rows: Tuple[Any, Any]
                   ) -> Optional[str]:
    """Why two rows are not a paired comparison (None when they are)."""
    from medssl.eval.subsets import load_indices

    a, b = rows
    ta = next(t for t in ref["targets"] if t["name"] == a["target"])
    tb = next(t for t in other["targets"] if t["name"] == b["target"])
    for role in ("train", "test"):
        if ta["data"][role].get("content_sha256") != tb["data"][role].get("content_sha256"):
            return f"target {a['target']!r}: the {role} data differ (content sha256)"
    if ref["protocol"]["seeds"] != other["protocol"]["seeds"]:
        return f"seeds differ ({ref['protocol']['seeds']} vs {other['protocol']['seeds']})"
    for fa, fb in zip(a["subset_files"], b["subset_files"]):
        try:
            same = np.array_equal(load_indices(ref_dir / fa)[0], load_indices(o_dir / fb)[0])
        except DataError as exc:
            return f"a subset file is missing or unreadable ({exc})"
        if not same:
            return f"target {a['target']!r}, {a['point']['label']}: the label subsets differ ({fa} vs {fb})"
    return None


def compare_panels(paths: Sequence[Path], figure: Optional[Path] = None) -> Tuple[str, List[str], Dict[str, Any]]:
    """``(markdown, warnings, result)`` comparing every panel with the first (see the
    module docstring); ``figure`` writes the overlaid curves there. ``result``:
    ``{"reference", "comparisons": [{"other", "rows": [...], "labels_saved": {...}}]}``."""
    dirs = [Path(p) if Path(p).is_dir() else Path(p).parent for p in paths]
    reports = [load_panel(Path(p)) for p in paths]
    names = [d.name or str(d) for d in dirs]
    ref_dir, ref = dirs[0], reports[0]
    issues: List[str] = []
    n_boot, boot_seed = int(ref["ci"]["n_boot"]), int(ref["ci"]["seed"])
    ref_preds = read_predictions(ref_dir, ref)
    ref_rows = {_key(r): r for r in ref["rows"] if r["source"] == "encoder"}
    task = {t["name"]: t["task"] for t in ref["targets"]}
    result: Dict[str, Any] = {"reference": str(ref_dir), "comparisons": []}
    for o_dir, other, name in zip(dirs[1:], reports[1:], names[1:]):
        if other["protocol"]["name"] != ref["protocol"]["name"]:
            issues.append(f"{name}: protocol {other['protocol']['name']} vs {ref['protocol']['name']} in {names[0]}")
        o_rows = {_key(r): r for r in other["rows"] if r["source"] == "encoder"}
        missing = sorted(set(ref_rows) ^ set(o_rows))
        if missing:
            issues.append(f"{name} and {names[0]} do not share {len(missing)} (target, point) row(s), e.g. "
                          f"{missing[0][0]} {missing[0][1]} {missing[0][2]:g}; only the shared ones are compared")
        o_preds = read_predictions(o_dir, other)
        comp: Dict[str, Any] = {"other": str(o_dir), "rows": [], "labels_saved": {}}
        for key in sorted(set(ref_rows) & set(o_rows), key=lambda k: (k[0], ref_rows[k]["n_labels"])):
            a, b = ref_rows[key], o_rows[key]
            why = _pairing_issue(ref_dir, ref, o_dir, other, (a, b))
            if why is not None:
                issues.append(f"{name} vs {names[0]}: not paired, left out: {why}")
                continue
            seeds = ref["protocol"]["seeds"]
            ya = [ref_preds[(key, s)][0] for s in seeds]
            if any(not np.array_equal(ya[0], o_preds[(key, s)][0]) for s in seeds):
                issues.append(f"{name} vs {names[0]}: {key[0]} {a['point']['label']}: test labels differ, left out")
                continue
            _, per_seed, boots = bootstrap_seed_means(
                ya[0], [[ref_preds[(key, s)][1] for s in seeds], [o_preds[(key, s)][1] for s in seeds]],
                task[key[0]], n_boot, boot_seed)
            comp["rows"].append({"target": key[0], "point": a["point"], "n_labels": a["n_labels"],
                                 "difference": {m: paired_summary(boots[m][1], boots[m][0], per_seed[m][1],
                                                                  per_seed[m][0]) for m in METRICS}})
        for target in sorted({k[0] for k in o_rows} & {k[0] for k in ref_rows}):
            comp["labels_saved"][target] = {m: labels_saved(ref, other, target, m)
                                            for m in ("auc", "balanced_accuracy")}
        result["comparisons"].append(comp)
    if figure is not None:
        _overlay(reports, names, figure)
        result["figure"] = str(figure)
    issues = list(dict.fromkeys(issues))  # "seeds differ" would otherwise repeat for every row
    return _markdown(result, names, reports, issues), issues, result


def _overlay(reports: Sequence[Dict[str, Any]], names: Sequence[str], path: Path) -> None:
    from medssl.eval.panel_plots import curves_from_rows, plot_label_efficiency

    merged: Dict[str, Any] = {}
    seen_baselines = set()
    for rep, name in zip(reports, names):
        titles = {s["name"]: s["title"] for s in rep["sources"]}
        keys = {s["name"]: json.dumps(s["provenance"], sort_keys=True, default=str) for s in rep["sources"]}
        rows = []
        for r in rep["rows"]:
            if r["source"] != "encoder" and (r["source"], keys[r["source"]]) in seen_baselines:
                continue
            rows.append(r)
        seen_baselines |= {(s, keys[s]) for s in keys if s != "encoder"}
        labels = {k: (f"{name}: {v}" if k == "encoder" else v) for k, v in titles.items()}
        for target, by_metric in curves_from_rows(rows, labels).items():
            for metric, lines in by_metric.items():
                merged.setdefault(target, {}).setdefault(metric, {}).update(lines)
    plot_label_efficiency(merged, path, note="mean over seeds, 95 % CI band (each panel's own bootstrap)")


def _fmt_n(v: Optional[float]) -> str:
    return "not reached" if v is None else f"{v:,.0f}"


def _markdown(result: Dict[str, Any], names: Sequence[str], reports: Sequence[Dict[str, Any]],
              issues: List[str]) -> str:
    from medssl.eval.panel_report import difference_cell

    lines = [f"# Label-efficiency comparison: {', '.join(names[1:])} against {names[0]}", ""]
    if issues:
        lines += ["**Warnings:**", ""] + [f"- {i}" for i in issues] + [""]
    lines += ["Differences are other minus reference, of the mean over seeds, with the 95 % CI of a paired "
              "bootstrap over test images (the same resamples for both encoders, the same label subsets and "
              "seeds); ± is the sd across seeds of the per-seed differences.", ""]
    for comp, name in zip(result["comparisons"], names[1:]):
        lines += [f"## {name} − {names[0]}", ""]
        head = "| Target | Labels | Labelled images | " + " | ".join(LABELS[m] for m in METRICS) + " |"
        lines += [head, "|---|---|---:|" + "---|" * len(METRICS)]
        for r in comp["rows"]:
            cells = [f"{difference_cell(r['difference'][m])} ± {r['difference'][m]['sd_over_seeds']:.3f}"
                     if r["difference"][m]["difference"] is not None else "n/a" for m in METRICS]
            lines.append(f"| {r['target']} | {r['point']['label']} | {r['n_labels']:g} | "
                         + " | ".join(cells) + " |")
        lines += ["", "Labels saved (by interpolation on each curve in log labels):", "",
                  "| Target | Metric | Best of | Best score | at labels | The other reaches it at | Labels the other saves |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for target, by_metric in comp["labels_saved"].items():
            for metric, sides in by_metric.items():
                for side, who in (("reference", names[0]), ("other", name)):
                    s = sides.get(side)
                    if s is None:
                        continue
                    saved = "—" if s["other_saves"] is None else f"{s['other_saves']:+,.0f}"
                    lines.append(f"| {target} | {LABELS[metric]} | {who} | {s['best']:.3f} | {s['at_labels']:g} | "
                                 f"{_fmt_n(s['other_needs'])} | {saved} |")
        lines.append("")
    if result.get("figure"):
        lines += [f"![label efficiency]({Path(result['figure']).name})", ""]
    return "\n".join(lines)
