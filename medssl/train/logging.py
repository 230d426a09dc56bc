"""Metrics written during training: JSON lines every step, a CSV and plots at the end,
TensorBoard when it is installed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

Row = Dict[str, Any]


class MetricsLogger:
    """Appends one JSON object per call to ``metrics.jsonl`` (flushed, so a killed run keeps
    what it logged) and mirrors scalars to TensorBoard when ``tensorboard`` is importable."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self._fh = None
        self._tb = None
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
        self._fh.write(json.dumps(clean) + "\n")
        self._fh.flush()
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
    """All rows of a metrics file; a torn last line (killed mid-write) is skipped."""
    rows: List[Row] = []
    if not Path(path).is_file():
        return rows
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
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
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow(r)


def plot_metrics(rows: Sequence[Row], path: Path, keys: Sequence[str], title: str = "") -> Optional[Path]:
    """One panel per key in ``keys`` present in ``rows``, against step; ``None`` if none is."""
    present = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
    if not present:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(present), 1, figsize=(6, 2.2 * len(present)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], present):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
