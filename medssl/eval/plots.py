"""Evaluation figures (matplotlib, Agg backend, PNG at 100 dpi).

* ``roc.png`` -- ROC curve per class (one-vs-rest for multiclass; the positive class for
  binary), AUC in the legend;
* ``confusion.png`` -- confusion matrix as counts and row-normalised (single-label);
* ``reliability.png`` -- accuracy vs confidence per bin, with the ECE in the title;
* ``tsne.png`` -- 2-D t-SNE of test embeddings coloured by class (seeded, at most
  ``max_points`` points by a seeded stratified subsample), as in the pNNCLR paper's Fig. 4.

Each function takes a ``note`` that becomes the title's second line: which seed the
figure shows (or that it aggregates), so a figure's number is never mistaken for the
report's mean across seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _flat_labels(y: np.ndarray) -> np.ndarray:
    """Single-label ``(N,)`` / ``(N, 1)`` -> ``(N,)`` int64; multilabel ``(N, C)`` unchanged."""
    y = np.asarray(y)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        return y.reshape(-1).astype(np.int64)
    return y


def _title(text: str, note: str) -> str:
    return f"{text}\n{note}" if note else text


def _save(fig: Any, path: Path) -> Path:
    from medssl.fileio import atomic_savefig

    try:
        atomic_savefig(fig, path, "the plot", dpi=DPI)
    finally:
        _plt().close(fig)
    return path


def plot_roc(y_true: Any, scores: np.ndarray, task: str, class_names: Sequence[str], path: Path,
             note: str = "") -> Path:
    """ROC curves: one per class (binary: the positive class), AUC (ours, MedMNIST rule) in the legend."""
    from sklearn.metrics import roc_curve

    from medssl.eval.metrics import auc_per_class

    plt = _plt()
    y = _flat_labels(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if task == "binary" and s.ndim == 1:
        s = np.stack([1 - s, s], 1)
    aucs = auc_per_class(y, s, task)
    cols = [s.shape[1] - 1] if task == "binary" else list(range(s.shape[1]))
    fig, ax = plt.subplots(figsize=(6, 5))
    for col, a in zip(cols, aucs):
        truth = y[:, col] if y.ndim == 2 else (y == col).astype(int)
        name = class_names[col] if col < len(class_names) else str(col)
        if truth.min() == truth.max():  # no positives or no negatives: no curve exists
            ax.plot([], [], label=f"{name} (AUC undefined)")
            continue
        fpr, tpr, _ = roc_curve(truth, s[:, col])
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {a:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)",
           title=_title("ROC" + (" (one-vs-rest)" if task in ("multiclass", "ordinal") else ""), note), xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(matrix: Any, class_names: Sequence[str], path: Path, note: str = "") -> Path:
    """Two panels: counts and row-normalised fractions (rows = true class)."""
    plt = _plt()
    cm = np.asarray(matrix, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    c = cm.shape[0]
    side = max(4.0, 0.6 * c + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side, side))
    for ax, data, title, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")):
        im = ax.imshow(data, cmap="Blues", vmin=0)
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set(xticks=range(c), yticks=range(c), xlabel="predicted", ylabel="true", title=title)
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
        hi = data.max() if data.size else 0
        for i in range(c):
            for j in range(c):
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if hi and data[i, j] > hi / 2 else "black")
    if note:
        fig.suptitle(f"confusion matrix, {note}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def reliability_bins(y_true: Any, scores: np.ndarray, task: str, n_bins: int = 15) -> Dict[str, np.ndarray]:
    """Per equal-width bin ``(lo, hi]``: count, mean confidence and accuracy (the ECE's terms)."""
    from medssl.eval.metrics import predict_labels
    from medssl.eval.validate import check_predictions

    y, s, task = check_predictions(y_true, scores, task)
    pred = predict_labels(s, task)
    if task == "multilabel":
        conf, correct = np.maximum(s, 1 - s).ravel(), (pred == y).ravel()
    elif task == "binary":
        conf, correct = np.maximum(s[:, -1], 1 - s[:, -1]), pred == y
    else:
        conf, correct = s.max(axis=1), pred == y
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(bins, correct.astype(float), n_bins) / count
        mconf = np.bincount(bins, conf, n_bins) / count
    return {"count": count, "accuracy": acc, "confidence": mconf, "edges": np.linspace(0, 1, n_bins + 1)}


def plot_reliability(y_true: Any, scores: np.ndarray, task: str, path: Path, ece: Optional[float],
                     n_bins: int = 15, note: str = "") -> Path:
    """Bars of accuracy per confidence bin against the diagonal; ECE in the title."""
    plt = _plt()
    b = reliability_bins(y_true, scores, task, n_bins)
    width = 1.0 / n_bins
    centres = b["edges"][:-1] + width / 2
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ok = b["count"] > 0
    ax.bar(centres[ok], b["accuracy"][ok], width=width, edgecolor="k", alpha=0.8, label="accuracy")
    ax.plot(b["confidence"][ok], b["accuracy"][ok], "o", color="C1", ms=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    title = "reliability" + (f" (ECE {ece:.3f})" if ece is not None else " (ECE undefined)")
    ax.set(ylabel="accuracy", title=_title(title, note), xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper left", fontsize=8)
    axh.bar(centres, b["count"], width=width, edgecolor="k", color="0.6")
    axh.set(xlabel="confidence", ylabel="count")
    fig.tight_layout()
    return _save(fig, path)


def tsne_embedding(emb: np.ndarray, labels: np.ndarray, seed: int = 0, max_points: int = 2000
                   ) -> tuple:
    """``(xy [n, 2], labels [n], index [n])``: seeded t-SNE of at most ``max_points`` rows
    (a seeded subsample, proportional per class) of ``emb``."""
    from sklearn.manifold import TSNE

    x = np.asarray(emb, dtype=np.float32)
    y = np.asarray(labels)
    idx = np.arange(len(x))
    if len(x) > max_points:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(x), size=max_points, replace=False))
    x, y = x[idx], y[idx]
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return xy, y, idx


def plot_tsne(emb: np.ndarray, labels: Any, class_names: Sequence[str], path: Path, seed: int = 0,
              max_points: int = 2000, note: str = "") -> Path:
    """t-SNE scatter of test embeddings coloured by class (multilabel: by first positive label)."""
    plt = _plt()
    y = np.asarray(labels)
    flat = y.argmax(axis=1) if (y.ndim == 2 and y.shape[1] > 1) else _flat_labels(y)
    xy, yy, _ = tsne_embedding(emb, flat, seed, max_points)
    fig, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(yy):
        m = yy == c
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        ax.scatter(xy[m, 0], xy[m, 1], s=8, alpha=0.8, label=f"{name} ({int(m.sum())})")
    ax.set(title=_title(f"t-SNE of test embeddings ({len(yy)} points)", note), xticks=[], yticks=[])
    ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(out: Path, y_true: Any, scores: np.ndarray, task: str, class_names: Sequence[str],
                metrics: Dict[str, Any], embeddings: Optional[np.ndarray] = None, seed: int = 0,
                tsne_max_points: int = 2000, shown: str = "", ece_across_seeds: str = "") -> Dict[str, str]:
    """Write every figure that applies into ``out``; returns ``{name: file name}``.
    ``shown`` says what the figures show (``"seed 0 (first of 3 seeds)"``) in every title;
    ``ece_across_seeds`` (``"0.283 ± 0.022"``) is added to the reliability diagram's."""
    out = Path(out)
    files = {"roc": plot_roc(y_true, scores, task, class_names, out / "roc.png", note=shown)}
    if task != "multilabel":
        files["confusion"] = plot_confusion(metrics["confusion_matrix"], class_names, out / "confusion.png",
                                            note=shown)
    if metrics.get("ece") is not None:
        files["reliability"] = plot_reliability(y_true, scores, task, out / "reliability.png", metrics["ece"],
                                                int(metrics.get("ece_bins", 15)),
                                                note=shown + (f"\nECE across seeds {ece_across_seeds}"
                                                              if ece_across_seeds else ""))
    if embeddings is not None and len(embeddings) >= 5:
        files["tsne"] = plot_tsne(embeddings, y_true, class_names, out / "tsne.png", seed, tsne_max_points,
                                  note=shown)
    return {k: Path(v).name for k, v in files.items()}
