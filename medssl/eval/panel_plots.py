"""The label-efficiency figure: a metric against the number of labelled images (log x),
one line per encoder / feature source with its 95 % CI band, one column per target and
one row per metric (matplotlib, PNG at :data:`medssl.eval.plots.DPI`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from medssl.eval.plots import _plt, _save

Curve = List[Tuple[float, float, float, float]]  # (n labels, mean, ci low, ci high), sorted by n
Curves = Dict[str, Dict[str, Dict[str, Curve]]]  # target -> metric -> line label -> curve
SHOWN = ("auc", "balanced_accuracy")
PER_CLASS = ", k per class"  # line-label suffix of labels_per_class points: drawn dashed, same colour
NAMES = {"auc": "AUC", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}


def curves_from_rows(rows: Sequence[Mapping[str, Any]], titles: Mapping[str, str], prefix: str = "") -> Curves:
    """Panel report rows as curves; ``titles`` maps a source name to its line label
    (``prefix`` goes before it, e.g. the report's name when several are overlaid). A point
    whose metric is undefined (null) is left out; its CI, when null, is drawn as the mean.
    Fractions and labels-per-class points are separate lines (stratified vs balanced
    subsets are different sampling rules, so one line through both would zigzag)."""
    out: Curves = {}
    for r in rows:
        kind = PER_CLASS if r["point"]["kind"] == "per_class" else ""
        for metric in NAMES:
            e = r["metrics"][metric]
            if e.get("mean") is None:
                continue
            lo, hi = (e.get("ci") or [None, None])[:2]
            line = out.setdefault(r["target"], {}).setdefault(metric, {}).setdefault(
                f"{prefix}{titles.get(r['source'], r['source'])}{kind}", [])
            line.append((float(r["n_labels"]), float(e["mean"]), e["mean"] if lo is None else lo,
                         e["mean"] if hi is None else hi))
    for by_metric in out.values():
        for lines in by_metric.values():
            for line in lines.values():
                line.sort()
    return out


def plot_label_efficiency(curves: Curves, path: Path, metrics: Sequence[str] = SHOWN, note: str = "") -> Path:
    """Write the figure of ``curves`` to ``path`` (see the module docstring)."""
    plt = _plt()
    targets = list(curves)
    fig, axes = plt.subplots(len(metrics), max(1, len(targets)), figsize=(4.6 * max(1, len(targets)),
                             3.4 * len(metrics)), squeeze=False)
    colours: Dict[str, str] = {}
    for col, target in enumerate(targets):
        for row, metric in enumerate(metrics):
            ax = axes[row][col]
            for label, pts in curves[target].get(metric, {}).items():
                base = label[: -len(PER_CLASS)] if label.endswith(PER_CLASS) else label
                colour = colours.setdefault(base, f"C{len(colours) % 10}")
                n, mean, lo, hi = zip(*pts)
                style = "s--" if base != label else "o-"
                ax.plot(n, mean, style, color=colour, lw=1.5, ms=4, label=label)
                ax.fill_between(n, lo, hi, color=colour, alpha=0.18, lw=0)
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set(xlabel="labelled training images" if row == len(metrics) - 1 else "",
                   ylabel=NAMES[metric], title=target if row == 0 else "")
    handles, labels = [], []
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ncol = max(1, min(len(labels), int(1.5 * len(targets))))  # about 30 characters a label
    legend_rows = -(-max(1, len(labels)) // ncol)
    bottom = 0.045 * legend_rows * 2 / len(metrics)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    if note:
        fig.suptitle(note, fontsize=9)
    fig.tight_layout(rect=(0, bottom, 1, 0.96 if note else 1))
    return _save(fig, path)
