"""Per-image predictions of a transfer evaluation, as ``predictions.csv``.

One row per (seed, test image), so a clinician can audit a case, join the scores with
patient data on ``index``, or recompute any metric with their own tools. Columns:

* ``seed``, ``index`` (position of the image in the test split, as ``dataset[index]``
  reads it), ``split``;
* single-label tasks: ``true_label``, ``true_class``, ``predicted_label``,
  ``predicted_class`` and one ``score_<class>`` per class (probabilities; binary: the
  predicted label is ``score_<positive class> > 0.5``, otherwise the argmax);
* multilabel: per label ``true_<label>``, ``predicted_<label>`` (score > 0.5) and
  ``score_<label>``.

Scores are written with full float precision (Python's shortest round-trip form), so a
metric recomputed from the file equals the report's.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, List, Sequence, Tuple

import numpy as np

from medssl.eval.metrics import predict_labels
from medssl.eval.validate import check_predictions
from medssl.text import csv_header

FILE = "predictions.csv"


def _column_names(class_names: Sequence[str]) -> List[str]:
    """Class names made unique (a repeated name gets ``_<index>``) and one line each, for
    column headers (the csv module quotes commas and quotes in them)."""
    names = [csv_header(n) for n in class_names]
    return [name if names.count(name) == 1 else f"{name}_{i}" for i, name in enumerate(names)]


def prediction_rows(seed: int, split: str, y_true: Any, scores: Any, task: str,
                    class_names: Sequence[str]) -> Tuple[List[str], List[List[Any]]]:
    """``(header, rows)`` of one seed's test predictions; see the module docstring."""
    y, s, task = check_predictions(y_true, scores, task)
    pred = predict_labels(s, task)
    names = list(class_names) or [str(i) for i in range(s.shape[1])]
    cols = _column_names(names)
    header = ["seed", "index", "split"]
    rows: List[List[Any]] = []
    if task == "multilabel":
        for c in cols:
            header += [f"true_{c}", f"predicted_{c}", f"score_{c}"]
        for i in range(len(y)):
            row: List[Any] = [seed, i, split]
            for j in range(len(cols)):
                row += [int(y[i, j]), int(pred[i, j]), repr(float(s[i, j]))]
            rows.append(row)
        return header, rows
    header += ["true_label", "true_class", "predicted_label", "predicted_class"] + [f"score_{c}" for c in cols]
    for i in range(len(y)):
        rows.append([seed, i, split, int(y[i]), names[int(y[i])], int(pred[i]), names[int(pred[i])],
                     *(repr(float(v)) for v in s[i])])
    return header, rows


def write_predictions(path: Path, per_seed: Sequence[Tuple[int, Any, Any]], split: str, task: str,
                      class_names: Sequence[str]) -> Path:
    """Write ``predictions.csv``: ``per_seed`` is ``[(seed, y_true, scores), ...]``."""
    header: List[str] = []
    rows: List[List[Any]] = []
    for seed, y_true, scores in per_seed:
        header, seed_rows = prediction_rows(seed, split, y_true, scores, task, class_names)
        rows += seed_rows
    from medssl.fileio import atomic_write

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)

    return atomic_write(path, write, "the predictions")


def auc_recipe(task: str, class_names: Sequence[str], seed: int, file: str = FILE) -> str:
    """Python (pandas + scikit-learn) that recomputes the report's AUC of ``seed`` from
    ``predictions.csv``: binary, the positive class's score; otherwise the unweighted mean
    of the one-vs-rest AUC per class (MedMNIST's rule)."""
    cols = _column_names(list(class_names))
    lines = ["import pandas as pd", "from sklearn.metrics import roc_auc_score", "",
             f'd = pd.read_csv("{file}")', f'd = d[d["seed"] == {seed}]']
    if task == "binary":
        lines.append(f'auc = roc_auc_score(d["true_label"], d[{"score_" + cols[-1]!r}])')
    elif task == "multilabel":
        lines.append(f"labels = {cols!r}")
        lines.append('auc = sum(roc_auc_score(d[f"true_{c}"], d[f"score_{c}"]) for c in labels) / len(labels)')
    else:
        lines.append(f"classes = {cols!r}")
        lines.append('auc = sum(roc_auc_score(d["true_label"] == i, d[f"score_{c}"])')
        lines.append("          for i, c in enumerate(classes)) / len(classes)")
    lines.append("print(auc)")
    return "\n".join(lines)
