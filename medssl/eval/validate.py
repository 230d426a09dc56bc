"""Input checks shared by the evaluation modules: task names, labels and scores.

Every function returns a clean numpy array or raises :class:`EvaluationError` (bad
arrays) / :class:`ConfigError` (bad task name) with a message naming what was wrong.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from medssl.errors import ConfigError, EvaluationError
from medssl.tasks import normalise_task

def single_labels(y: Any, name: str = "y_true") -> np.ndarray:
    """Integer class labels ``(N,)`` from ``(N,)`` or MedMNIST-style ``(N, 1)`` input."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise EvaluationError(
            f"{name}: expected class labels of shape (N,) or (N, 1), got shape {arr.shape}; "
            "multilabel targets (N, C) need task='multilabel'"
        )
    if arr.size == 0:
        raise EvaluationError(f"{name}: no labels (empty array)")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise EvaluationError(f"{name}: class labels must be whole numbers, got non-integer values")
    elif arr.dtype.kind not in "iub":
        raise EvaluationError(f"{name}: class labels must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise EvaluationError(
            f"{name}: negative label {int(arr.min())} found (-1 marks an unlabelled item); "
            "evaluate on labelled items only"
        )
    return arr


def multilabel_targets(y: Any, name: str = "y_true") -> np.ndarray:
    """0/1 targets ``(N, C)`` as int64."""
    arr = np.asarray(y)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise EvaluationError(f"{name}: multilabel targets must have shape (N, C) with N > 0, got {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        raise EvaluationError(f"{name}: multilabel targets must be 0 or 1")
    return arr.astype(np.int64)


def _finite_scores(y_score: Any) -> np.ndarray:
    s = np.asarray(y_score, dtype=np.float64)
    if s.size and not np.all(np.isfinite(s)):
        bad = int(np.sum(~np.isfinite(s)))
        raise EvaluationError(f"y_score: {bad} NaN or infinite value(s); scores must be finite")
    return s


def check_predictions(
    y_true: Any, y_score: Any, task: str, num_classes: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray, str]:
    """Validate and normalise a (labels, scores) pair.

    Returns ``(y, s, task)``: ``y`` is ``(N,)`` int64 (single-label) or ``(N, C)`` int64
    (multilabel); ``s`` is ``(N, C)`` float64. Binary scores given as ``(N,)`` or ``(N, 1)``
    positive-class values ``p`` become ``(N, 2)`` columns ``[1 - p, p]``, so column ``-1`` is
    always the positive class (as MedMNIST reads it).
    """
    task = normalise_task(task)
    s = _finite_scores(y_score)
    if task == "multilabel":
        y = multilabel_targets(y_true)
        if s.shape != y.shape:
            raise EvaluationError(f"y_score: expected shape {y.shape} to match multilabel y_true, got {s.shape}")
        return y, s, task
    y = single_labels(y_true)
    if task == "binary":
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        if s.ndim == 1:
            s = np.stack([1.0 - s, s], axis=1)
        if s.ndim != 2 or s.shape[1] != 2:
            raise EvaluationError(
                f"y_score: binary scores must have shape (N,), (N, 1) or (N, 2), got {np.shape(y_score)}"
            )
    elif s.ndim != 2 or s.shape[1] < 2:
        raise EvaluationError(
            f"y_score: {task} scores must have shape (N, C) with C >= 2, got {np.shape(y_score)}"
        )
    if s.shape[0] != y.shape[0]:
        raise EvaluationError(f"y_true has {y.shape[0]} labels but y_score has {s.shape[0]} rows")
    c = s.shape[1]
    if num_classes is not None and num_classes != c:
        raise EvaluationError(f"y_score has {c} columns but num_classes={num_classes}")
    if y.max() >= c:
        raise EvaluationError(
            f"y_true: label {int(y.max())} out of range for {c} classes (scores have {c} columns)"
        )
    return y, s, task


def check_probabilities(s: np.ndarray, what: str) -> None:
    """Raise unless every score lies in [0, 1] (ECE and Brier need probabilities)."""
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise EvaluationError(
            f"{what} needs probabilities in [0, 1], got scores in [{s.min():.3g}, {s.max():.3g}]; "
            "apply softmax (single-label) or sigmoid (multilabel) first"
        )
