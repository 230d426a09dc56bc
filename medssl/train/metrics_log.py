"""Metrics written during training: JSON lines every step, a CSV and plots at the end,
TensorBoard when it is installed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

Row = Dict[str, Any]

#: What to do after a failed write in a run directory: the checkpoints are never touched.
RESUME_ADVICE = ("free some space or choose another out_dir, then continue with --resume "
                 "(the checkpoints already written are intact)")


class MetricsLogger:
    """Appends one JSON object per call to ``metrics.jsonl`` (flushed, so a killed run keeps
    what it logged) and mirrors scalars to TensorBoard when ``tensorboard`` is importable."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self._fh = None
        self._tb = None
        self.mirrors: List[Any] = []  # more sinks with .log(row) (the MLflow run, medssl.tracking)
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except (ImportError, ModuleNotFoundError):
                self._tb = None

    def log(self, row: Row) -> None:
        if not self.enabled or self._fh is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        try:
            self._fh.write(json.dumps(clean) + "\n")
            self._fh.flush()
        except OSError as exc:  # a full disk: say so in one line; the checkpoints are intact
            from medssl.errors import WriteError
            from medssl.fileio import write_failure_reason

            raise WriteError(f"cannot append to the metrics log {self.path}: "
                             f"{write_failure_reason(exc, self.run_dir)}; {RESUME_ADVICE}") from exc
        for mirror in self.mirrors:
            mirror.log(row)
        if self._tb is not None and "step" in row:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_jsonl(path: Path) -> List[Row]:
    """All rows of a metrics file; a torn last line (killed mid-write) is skipped, and so is
    a line that is JSON but not an object (``null``, a list: never written by medssl), with
    one warning naming the file and the line numbers (a torn last line, the usual case
    after a kill, is skipped silently)."""
    rows: List[Row] = []
    if not Path(path).is_file():
        return rows
    skipped: List[int] = []
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # torn, or nested beyond reason
            skipped.append(number)
            continue
        if isinstance(row, dict) and isinstance(row.get("step", 0), int) and not isinstance(row.get("step"), bool):
            rows.append(row)
        else:
            skipped.append(number)
    lines_total = text.count("\n") + (0 if text.endswith("\n") else 1)
    skipped = [n for n in skipped if not (n == lines_total and not text.endswith("\n"))]  # torn last line
    if skipped:
        import warnings

        from medssl.errors import DataWarning

        shown = ", ".join(map(str, skipped[:5])) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"{path}: skipped {len(skipped)} line(s) that are not metrics rows (JSON objects with an "
                      f"integer step): line(s) {shown}", DataWarning, stacklevel=2)
    return rows


def keep_until(rows: Sequence[Row], step: int) -> List[Row]:
    """Rows logged at or before ``step`` (a resumed run drops what it will log again)."""
    return [r for r in rows if r.get("step", -1) <= step]


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """``rows`` as CSV with the union of their keys as columns (step first)."""
    keys: List[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    if "step" in keys:
        keys.remove("step")
        keys.insert(0, "step")
    from medssl.fileio import atomic_write

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            for r in rows:
                writer.writerow(r)

    atomic_write(path, write, "the metrics table", RESUME_ADVICE)


# One line per monitored quantity, printed under its panel in monitor.png so the figure
# reads without the docs (docs/methods.md defines each).
CAPTIONS = {
    "loss": "the objective's loss (lower is better; compare runs of the same objective only)",
    "lr": "learning rate after warm-up and cosine decay",
    "emb_std": "mean per-dimension std of the unit embeddings: ~1/sqrt(dim) when spread, 0 when collapsed",
    "nn_purity": "share of support-set neighbours with the query's label (needs labels; higher = more useful positives)",
    "nn_same_image": "share of neighbours that are an older view of the same image (high = the queue remembers itself)",
    "weight_entropy": "SNCLR: mean entropy of the neighbour weights (at most log k; low = one neighbour dominates)",
    "knn_top1": "weighted kNN top-1 accuracy on val_data with the current encoder",
    "knn_auc": "weighted kNN AUC on val_data with the current encoder",
}
YLABELS = {"emb_std": "std", "nn_purity": "fraction", "nn_same_image": "fraction", "weight_entropy": "nats",
           "knn_top1": "accuracy", "knn_auc": "AUC", "lr": "lr", "loss": "loss"}


def plot_metrics(rows: Sequence[Row], path: Path, keys: Sequence[str], title: str = "",
                 captions: Optional[Dict[str, str]] = None) -> Optional[Path]:
    """One panel per key in ``keys`` present in ``rows``, against step, each titled with
    its key, its y axis labelled and ``captions[key]`` (default :data:`CAPTIONS`) under it
    as one line; ``None`` if no key is present."""
    present = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
    if not present:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captions = CAPTIONS if captions is None else captions
    fig, axes = plt.subplots(len(present), 1, figsize=(7, 2.6 * len(present) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], present):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_title(key, fontsize=10, loc="left")
        ax.set_ylabel(YLABELS.get(key, key))
        ax.set_xlabel("step")
        ax.xaxis.set_tick_params(labelbottom=True)
        if captions.get(key):
            ax.text(0.0, -0.32, captions[key], transform=ax.transAxes, fontsize=7.5, va="top", color="0.25")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    from medssl.fileio import atomic_savefig

    try:
        atomic_savefig(fig, path, "the plot", RESUME_ADVICE, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
