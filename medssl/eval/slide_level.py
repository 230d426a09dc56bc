"""Slide-level results from tile scores: what a clinical whole-slide study reports.

Every tile of a slide carries the slide's label (:mod:`medssl.data.wsi_tiles` with a
label CSV), but the unit a pathologist decides on is the slide. Tile scores ``(N, C)``
are pooled per slide in two ways:

* ``mean``: the mean of the tile probabilities (every tile votes equally);
* ``max``: multiple-instance max pooling, the score of the most confident tile per class
  (a slide is positive if any region is). For binary tasks the slide's positive score is
  the max of its tiles' positive scores (negative = 1 - that); for multiclass the per-class
  maxima are renormalised to sum to 1.

:func:`slide_level` scores one prediction set (AUC and accuracy per pooling);
:func:`summarise` takes the mean and sd across seeds; :func:`markdown_lines` renders them.
The transfer report calls these when the test set can say which slide each tile is from
(a ``slide_index()`` method).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from medssl.errors import EvaluationError

POOLINGS = ("mean", "max")


def pool_scores(scores: np.ndarray, slide: np.ndarray, how: str, task: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(slides (S,), slide_scores (S, C))``: the tile ``scores`` (N, C) pooled per value
    of ``slide`` (N,) ints by ``how`` (``mean`` | ``max``), slides in ascending order."""
    if how not in POOLINGS:
        raise EvaluationError(f"slide pooling must be one of {', '.join(POOLINGS)}, got {how!r}")
    s = np.asarray(scores, dtype=np.float64)
    s = s.reshape(len(s), -1)
    ids, inverse = np.unique(np.asarray(slide), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    if how == "mean":
        out = np.zeros((len(ids), s.shape[1]))
        np.add.at(out, inverse, s)
        return ids, out / counts[:, None]
    out = np.full((len(ids), s.shape[1]), -np.inf)
    np.maximum.at(out, inverse, s)
    if task == "binary" and s.shape[1] == 2:
        out[:, 0] = 1.0 - out[:, 1]
    elif s.shape[1] > 1:
        out = out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
    return ids, out


def slide_labels(labels: np.ndarray, slide: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(slides (S,), label per slide (S,))``; every tile of a slide must share its label."""
    y = np.asarray(labels).reshape(-1)
    ids, first = np.unique(np.asarray(slide), return_index=True)
    per_slide = y[first]
    mismatch = y != per_slide[np.searchsorted(ids, slide)]
    if mismatch.any():
        raise EvaluationError(f"slide-level results need one label per slide, but slide {int(np.asarray(slide)[mismatch][0])} "
                              "has tiles with different labels")
    return ids, per_slide


def slide_level(labels: Any, scores: Any, slide: Any, task: str, slide_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``{"n_slides", "class_counts", "mean": {"auc", "accuracy"}, "max": {...}, "scores"}``
    for tile ``labels`` (N,), tile ``scores`` (N, C) and tile ``slide`` indices (N,).

    AUC is ``None`` where undefined (a class absent among the slides). ``scores`` maps
    each slide (its name from ``slide_names`` when given) to its label and pooled
    positive / predicted-class score, for a per-slide table.
    """
    from medssl.eval.metrics import accuracy, auc

    if task not in ("binary", "multiclass"):
        raise EvaluationError(f"slide-level results are defined for binary and multiclass tasks, not {task!r}")
    slide = np.asarray(slide).reshape(-1)
    if len(slide) != len(np.asarray(labels).reshape(-1)):
        raise EvaluationError(f"{len(slide)} slide indices for {len(np.asarray(labels).reshape(-1))} tile labels")
    ids, y = slide_labels(labels, slide)
    out: Dict[str, Any] = {"n_slides": int(len(ids)),
                           "class_counts": np.bincount(y.astype(np.int64)).tolist()}
    table: Dict[str, Dict[str, Any]] = {}
    for how in POOLINGS:
        _, pooled = pool_scores(scores, slide, how, task)
        value = auc(y, pooled, task) if len(np.unique(y)) > 1 else float("nan")
        out[how] = {"auc": None if math.isnan(value) else float(value), "accuracy": float(accuracy(y, pooled, task))}
        for i, sid in enumerate(ids):
            name = str(slide_names[int(sid)]) if slide_names is not None else str(int(sid))
            row = table.setdefault(name, {"label": int(y[i])})
            row[how] = float(pooled[i, -1]) if task == "binary" else int(np.argmax(pooled[i]))
    out["scores"] = table
    return out


def for_dataset(ds: Any, labels: np.ndarray, scores: np.ndarray, task: str) -> Optional[Dict[str, Any]]:
    """:func:`slide_level` for a test dataset that knows its tiles' slides, else ``None``.

    A radiology data set (``dicom`` / ``nifti``: a ``patient_index()`` method) is pooled
    per patient the same way (``"unit": "patient"``), when every patient has one label."""
    index = getattr(ds, "slide_index", None)
    if task not in ("binary", "multiclass"):
        return None
    if index is not None:
        return slide_level(labels, scores, index(), task, getattr(ds, "slide_names", None))
    index = getattr(ds, "patient_index", None)
    if index is None:
        return None
    groups = index()
    y = np.asarray(labels).reshape(-1)
    if any(len(np.unique(y[groups == g])) > 1 for g in np.unique(groups)):
        return None  # a patient with images of several labels has no single patient-level truth
    out = slide_level(labels, scores, groups, task, getattr(ds, "patient_names", None))
    out["unit"] = "patient"
    return out


def summarise(per_seed: Sequence[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """Mean and sd across seeds of each pooling's slide AUC / accuracy (seeds whose
    metrics carry a ``slide_level`` entry); ``None`` when none does."""
    from medssl.eval.metrics import mean_sd

    runs = [r["metrics"]["slide_level"] for r in per_seed if r["metrics"].get("slide_level")]
    if not runs:
        return None
    out: Dict[str, Any] = {"n_slides": runs[0]["n_slides"], "class_counts": runs[0]["class_counts"],
                           "unit": runs[0].get("unit", "slide")}
    for how in POOLINGS:
        out[how] = {}
        for key in ("auc", "accuracy"):
            vals = [r[how][key] for r in runs if r[how][key] is not None]
            m, s = mean_sd(vals) if vals else (None, None)
            out[how][key] = {"mean": m, "sd": s, "n": len(vals)}
    return out


def markdown_lines(summary: Optional[Mapping[str, Any]]) -> List[str]:
    """The report.md section for a :func:`summarise` result (nothing when ``None``)."""
    if not summary:
        return []

    from medssl.eval.seeds import format_mean_sd as cell  # no "± 0.000" for one seed

    unit = summary.get("unit", "slide")
    item = "Tile" if unit == "slide" else "Image"
    lines = [f"## {unit.capitalize()} level", "",
             f"{item} scores pooled per {unit} ({summary['n_slides']} test {unit}s, class counts "
             f"{summary['class_counts']}); mean ± SD across seeds.", "",
             f"| Pooling | {unit.capitalize()} AUC | {unit.capitalize()} accuracy |", "|---|---|---|"]
    for how in POOLINGS:
        lines.append(f"| {how} | {cell(summary[how]['auc'])} | {cell(summary[how]['accuracy'])} |")
    return lines + [""]
