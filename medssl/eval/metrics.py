"""Classification metrics on numpy arrays, with MedMNIST's AUC / accuracy semantics.

Inputs (see :func:`medssl.eval.validate.check_predictions`): ``y_true`` is ``(N,)`` or
``(N, 1)`` int class labels, or ``(N, C)`` 0/1 for ``task='multilabel'``; ``y_score`` is
``(N, C)`` scores (probabilities for ECE / Brier), or for ``task='binary'`` ``(N, 2)``,
``(N,)`` or ``(N, 1)`` positive-class scores. ``task`` is one of ``binary``,
``multiclass``, ``multilabel``, ``ordinal`` (MedMNIST task strings also work).

Scalar metrics return Python floats; a metric that is undefined on the given data (AUC
when a class has no positive or no negative example) returns ``nan`` rather than
raising, so :func:`evaluate_predictions` and :func:`bootstrap_ci` can report it. Exact
definitions: docs/evaluation.md.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import rankdata

from medssl.errors import ConfigError, EvaluationError
from medssl.eval.validate import check_predictions, check_probabilities, normalise_task
from medssl.text import name_list

MetricFn = Callable[[np.ndarray, np.ndarray], float]


# ----------------------------------------------------------------------------- helpers
def predict_labels(y_score: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Hard predictions from checked scores ``(N, C)``: MedMNIST's rules.

    binary: ``score[:, -1] > threshold`` -> ``(N,)``; multiclass / ordinal: argmax
    (first index on ties) -> ``(N,)``; multilabel: ``score > threshold`` -> ``(N, C)``.
    """
    if task == "binary":
        return (y_score[:, -1] > threshold).astype(np.int64)
    if task == "multilabel":
        return (y_score > threshold).astype(np.int64)
    return np.argmax(y_score, axis=1).astype(np.int64)


def _one_vs_rest(y: np.ndarray, task: str, num_classes: int) -> np.ndarray:
    """``(N, C)`` 0/1 indicator of each class (multilabel targets are already that)."""
    if y.ndim == 2:
        return y
    return (y[:, None] == np.arange(num_classes)[None, :]).astype(np.int64)


def _rank_auc(pos: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-column ROC AUC by the Mann-Whitney statistic with average ranks for ties.

    ``pos`` and ``scores`` are ``(N, K)``; equals sklearn's ``roc_auc_score`` column by
    column (up to float rounding) and is ``nan`` where a column lacks positives or
    negatives.
    """
    ranks = rankdata(scores, axis=0, method="average")
    n_pos = pos.sum(axis=0).astype(np.float64)
    n_neg = pos.shape[0] - n_pos
    rank_sum = (ranks * pos).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def _binary_confusion(truth: np.ndarray, pred: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Per-column TP, FP, FN, TN of ``(N, K)`` 0/1 arrays."""
    tp = np.sum((truth == 1) & (pred == 1), axis=0)
    fp = np.sum((truth == 0) & (pred == 1), axis=0)
    fn = np.sum((truth == 1) & (pred == 0), axis=0)
    tn = np.sum((truth == 0) & (pred == 0), axis=0)
    return tp, fp, fn, tn


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


# ----------------------------------------------------------------------- headline metrics
def accuracy(y_true: Any, y_score: Any, task: str, threshold: float = 0.5) -> float:
    """MedMNIST ``getACC``: binary ``1[score_pos > threshold] == y``; multiclass / ordinal
    argmax; multilabel: mean over all ``N * C`` entries of ``1[score > threshold] == y``."""
    y, s, task = check_predictions(y_true, y_score, task)
    return float(np.mean(predict_labels(s, task, threshold) == y))


def auc_per_class(y_true: Any, y_score: Any, task: str) -> List[float]:
    """One-vs-rest ROC AUC per score column (``nan`` where undefined).

    binary: one value, for the positive class (column ``-1``); multiclass / ordinal: one
    per class, class ``i`` vs the rest on score column ``i``; multilabel: one per label.
    """
    y, s, task = check_predictions(y_true, y_score, task)
    if task == "binary":
        return [float(_rank_auc((y == 1)[:, None].astype(np.int64), s[:, -1:])[0])]
    return [float(v) for v in _rank_auc(_one_vs_rest(y, task, s.shape[1]), s)]


def auc(y_true: Any, y_score: Any, task: str) -> float:
    """MedMNIST ``getAUC``: binary: AUC of the positive-class score; otherwise the
    unweighted mean of :func:`auc_per_class` over all columns (``nan`` if any is undefined,
    as MedMNIST's mean would be)."""
    return float(np.mean(auc_per_class(y_true, y_score, task)))


# --------------------------------------------------------------------- secondary metrics
def confusion_matrix(y_true: Any, y_score: Any, task: str, threshold: float = 0.5) -> np.ndarray:
    """Single-label: ``(C, C)`` counts, rows = true class, columns = predicted class.
    Multilabel: ``(C, 2, 2)`` per label ``[[TN, FP], [FN, TP]]`` (sklearn's layout)."""
    y, s, task = check_predictions(y_true, y_score, task)
    pred = predict_labels(s, task, threshold)
    c = s.shape[1]
    if task == "multilabel":
        tp, fp, fn, tn = _binary_confusion(y, pred)
        return np.stack([np.stack([tn, fp], 1), np.stack([fn, tp], 1)], 1).astype(np.int64)
    return np.bincount(y * c + pred, minlength=c * c).reshape(c, c).astype(np.int64)


def sensitivity_specificity(
    y_true: Any, y_score: Any, task: str, threshold: float = 0.5
) -> Tuple[List[float], List[float]]:
    """Per class (one-vs-rest on the hard predictions): sensitivity ``TP / (TP + FN)``
    and specificity ``TN / (TN + FP)``; ``nan`` where the denominator is 0."""
    y, s, task = check_predictions(y_true, y_score, task)
    c = s.shape[1]
    truth = _one_vs_rest(y, task, c)
    pred = _one_vs_rest(predict_labels(s, task, threshold), task, c)
    tp, fp, fn, tn = _binary_confusion(truth, pred)
    return [float(v) for v in _ratio(tp, tp + fn)], [float(v) for v in _ratio(tn, tn + fp)]


def balanced_accuracy(y_true: Any, y_score: Any, task: str, threshold: float = 0.5) -> float:
    """Single-label: mean recall over the classes present in ``y_true`` (sklearn's
    ``balanced_accuracy_score``). Multilabel: mean over labels of
    ``(sensitivity + specificity) / 2``, each label using only the defined terms."""
    sens, spec = sensitivity_specificity(y_true, y_score, task, threshold)
    if normalise_task(task) == "multilabel":
        per_label = [np.nanmean([a, b]) for a, b in zip(sens, spec) if not (math.isnan(a) and math.isnan(b))]
        return float(np.mean(per_label)) if per_label else math.nan
    present = [v for v in sens if not math.isnan(v)]
    return float(np.mean(present))


def macro_f1(y_true: Any, y_score: Any, task: str, threshold: float = 0.5) -> float:
    """Unweighted mean over all ``C`` classes (labels for multilabel) of
    ``F1 = 2 TP / (2 TP + FP + FN)``, counting 0 where a class is neither present nor
    predicted (sklearn ``f1_score(average='macro', zero_division=0)``)."""
    y, s, task = check_predictions(y_true, y_score, task)
    c = s.shape[1]
    tp, fp, fn, _ = _binary_confusion(
        _one_vs_rest(y, task, c), _one_vs_rest(predict_labels(s, task, threshold), task, c)
    )
    den = 2 * tp + fp + fn
    f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    return float(np.mean(f1))


def expected_calibration_error(
    y_true: Any, y_score: Any, task: str, n_bins: int = 15, threshold: float = 0.5
) -> float:
    """ECE with ``n_bins`` equal-width confidence bins on [0, 1].

    Confidence is the probability of the predicted class: single-label, the maximum row
    probability (binary: ``max(p, 1 - p)``); multilabel, every entry is a binary decision
    with confidence ``max(p, 1 - p)``. ECE = sum over bins of
    ``(n_bin / n) * |accuracy_bin - mean confidence_bin|``. Bins are ``(lo, hi]`` (the
    first also holds 0).
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    y, s, task = check_predictions(y_true, y_score, task)
    check_probabilities(s, "expected calibration error")
    pred = predict_labels(s, task, threshold)
    if task == "multilabel":
        conf = np.maximum(s, 1.0 - s).ravel()
        correct = (pred == y).ravel().astype(np.float64)
    elif task == "binary":
        conf = np.maximum(s[:, -1], 1.0 - s[:, -1])
        correct = (pred == y).astype(np.float64)
    else:
        conf = s.max(axis=1)
        correct = (pred == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, conf, n_bins))
    # sum_b (n_b/n) |acc_b - conf_b| == sum_b |sum correct - sum conf| / n
    return float(gap[count > 0].sum() / conf.size)


def brier_score(y_true: Any, y_score: Any, task: str) -> float:
    """Binary: mean of ``(p_pos - y)^2``. Multiclass / ordinal: mean over samples of the sum
    over classes of ``(p_c - 1[y = c])^2`` (range 0..2). Multilabel: mean over all entries
    of ``(p - y)^2``."""
    y, s, task = check_predictions(y_true, y_score, task)
    check_probabilities(s, "Brier score")
    if task == "binary":
        return float(np.mean((s[:, -1] - y) ** 2))
    if task == "multilabel":
        return float(np.mean((s - y) ** 2))
    return float(np.mean(np.sum((s - _one_vs_rest(y, task, s.shape[1])) ** 2, axis=1)))


# ---------------------------------------------------------------------------- bootstrap
class BootstrapCI(tuple):
    """``(point, low, high)`` with ``n_boot``, ``n_used`` and ``n_skipped`` attributes.

    A tuple, so ``point, low, high = bootstrap_ci(...)`` works.
    """

    n_boot: int
    n_used: int
    n_skipped: int

    def __new__(cls, point: float, low: float, high: float, n_boot: int, n_used: int) -> "BootstrapCI":
        obj = super().__new__(cls, (point, low, high))
        obj.n_boot, obj.n_used, obj.n_skipped = n_boot, n_used, n_boot - n_used
        return obj

    @property
    def point(self) -> float:
        return self[0]

    @property
    def low(self) -> float:
        return self[1]

    @property
    def high(self) -> float:
        return self[2]


def _safe_metric(metric_fn: MetricFn, y: np.ndarray, s: np.ndarray) -> float:
    """The metric value, or ``nan`` if it is undefined on this (re)sample."""
    try:
        v = float(metric_fn(y, s))
    except (EvaluationError, ValueError, ZeroDivisionError):
        return math.nan
    return v


def bootstrap_ci(
    metric_fn: MetricFn,
    y_true: Any,
    y_score: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of ``metric_fn(y_true, y_score)``.

    Each of ``n_boot`` resamples draws ``N`` rows with replacement; with
    ``stratified=True`` and single-label ``y_true`` (1-D or ``(N, 1)``) it draws within
    each class, keeping the class counts (multilabel targets are resampled as a whole).
    Resamples on which the metric is undefined (``nan`` or a ``ValueError``) are skipped
    and counted in ``n_skipped``. ``low`` / ``high`` are the ``alpha/2`` and
    ``1 - alpha/2`` quantiles (numpy's linear interpolation) of the valid values, ``nan``
    if none is valid. ``point`` is the metric on the full data.
    """
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    y = np.asarray(y_true)
    s = np.asarray(y_score)
    if y.shape[0] != s.shape[0] or y.shape[0] == 0:
        raise EvaluationError(f"y_true has {y.shape[0]} rows but y_score has {s.shape[0]}; need equal, > 0")
    point = _safe_metric(metric_fn, y, s)
    rng = np.random.default_rng(seed)
    flat = y[:, 0] if (y.ndim == 2 and y.shape[1] == 1) else y
    groups = [np.arange(y.shape[0])]
    if stratified and flat.ndim == 1:
        groups = [np.flatnonzero(flat == c) for c in np.unique(flat)]
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        values[b] = _safe_metric(metric_fn, y[idx], s[idx])
    valid = values[~np.isnan(values)]
    if valid.size == 0:
        return BootstrapCI(point, math.nan, math.nan, n_boot, 0)
    low, high = np.quantile(valid, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapCI(point, float(low), float(high), n_boot, int(valid.size))


# --------------------------------------------------------------------------- reporting
def _json_float(v: float) -> Optional[float]:
    return None if v is None or math.isnan(v) else float(v)


def _per_class(names: Sequence[str], values: Sequence[float]) -> Dict[str, Optional[float]]:
    return {n: _json_float(v) for n, v in zip(names, values)}


def evaluate_predictions(
    y_true: Any,
    y_score: Any,
    task: str,
    class_names: Optional[Sequence[str]] = None,
    ci: bool = True,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    threshold: float = 0.5,
    n_bins: int = 15,
) -> Dict[str, Any]:
    """Every metric of this module as a JSON-serialisable dict (no NaN: ``None`` instead).

    Keys: ``task, n, num_classes, class_names, class_counts, accuracy, auc,
    auc_per_class, balanced_accuracy, macro_f1, sensitivity, specificity,
    confusion_matrix, ece, ece_bins, brier, threshold, warnings`` and, with ``ci=True``,
    ``accuracy_ci`` / ``auc_ci`` ``[low, high]`` plus ``bootstrap`` (its settings and
    skipped-resample counts). An undefined metric is ``None`` with a line in ``warnings``
    saying why (for example the classes missing from ``y_true``). ECE and Brier need
    probabilities; for other scores they are ``None`` with a warning.
    """
    y, s, task = check_predictions(y_true, y_score, task)
    c = s.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(c)]
    class_names = [str(n) for n in class_names]
    if len(class_names) != c:
        raise EvaluationError(f"class_names has {len(class_names)} names but the scores have {c} classes")
    warnings: List[str] = []

    counts = _one_vs_rest(y, task, c).sum(axis=0)
    per_auc = auc_per_class(y, s, task)
    auc_names = [class_names[-1]] if task == "binary" else class_names
    undefined = [n for n, v in zip(auc_names, per_auc) if math.isnan(v)]
    if undefined:
        why = "have no positive or no negative example" if task == "multilabel" else "are absent (or the only class present)"
        warnings.append(
            f"AUC undefined: class(es) {name_list(undefined)} {why} in y_true, so the mean AUC is null"
        )
    absent = [n for n, k in zip(class_names, counts) if k == 0]
    if absent and task != "multilabel":
        warnings.append(f"class(es) {name_list(absent)} absent from y_true: sensitivity is null for them")

    sens, spec = sensitivity_specificity(y, s, task, threshold)
    out: Dict[str, Any] = {
        "task": task,
        "n": int(y.shape[0]),
        "num_classes": int(c),
        "class_names": class_names,
        "class_counts": [int(k) for k in counts],
        "threshold": float(threshold),
        "accuracy": accuracy(y, s, task, threshold),
        "auc": _json_float(float(np.mean(per_auc))),
        "auc_per_class": _per_class(auc_names, per_auc),
        "balanced_accuracy": _json_float(balanced_accuracy(y, s, task, threshold)),
        "macro_f1": macro_f1(y, s, task, threshold),
        "sensitivity": _per_class(class_names, sens),
        "specificity": _per_class(class_names, spec),
        "confusion_matrix": confusion_matrix(y, s, task, threshold).tolist(),
        "ece_bins": int(n_bins),
    }
    try:
        out["ece"] = expected_calibration_error(y, s, task, n_bins, threshold)
        out["brier"] = brier_score(y, s, task)
    except EvaluationError as exc:
        out["ece"] = out["brier"] = None
        warnings.append(f"ECE and Brier not computed: {exc}")

    if ci:
        acc_ci = bootstrap_ci(lambda a, b: accuracy(a, b, task, threshold), y, s, n_boot, alpha, seed)
        auc_ci = bootstrap_ci(lambda a, b: auc(a, b, task), y, s, n_boot, alpha, seed)
        out["accuracy_ci"] = [_json_float(acc_ci.low), _json_float(acc_ci.high)]
        out["auc_ci"] = [_json_float(auc_ci.low), _json_float(auc_ci.high)]
        out["bootstrap"] = {
            "method": "percentile",
            "stratified": task != "multilabel",
            "n_boot": int(n_boot),
            "alpha": float(alpha),
            "seed": int(seed),
            "skipped": {"accuracy": acc_ci.n_skipped, "auc": auc_ci.n_skipped},
        }
        if 0 < auc_ci.n_skipped < n_boot:
            warnings.append(f"AUC undefined on {auc_ci.n_skipped} of {n_boot} bootstrap resamples (skipped)")
    out["warnings"] = warnings
    return out


def mean_sd(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) across seeds; sd is 0 for one value."""
    v = np.asarray([math.nan if x is None else float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        raise EvaluationError("mean_sd: no values given")
    if np.any(np.isnan(v)):
        raise EvaluationError("mean_sd: a value is NaN/None (an undefined metric); drop or report it separately")
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), sd
