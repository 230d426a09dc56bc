"""Bootstrap over test images of metrics averaged over seeds, vectorised, and paired.

A panel row's number is the mean over seeds of a metric on the whole test split; its CI
must be the interval of that number. One resample of the test images (drawn within each
class, as :func:`medssl.eval.metrics.bootstrap_ci` does, from the same random stream) is
applied to every seed's predictions and to every encoder's, so

* the CI of a row is the percentile interval of the seed mean over the resamples;
* the CI of a difference between two encoders is that of the difference of their seed
  means on the *same* resamples (a paired bootstrap over test images: the two encoders
  share the test images, the label subsets and the seeds).

A resample is a vector of counts ``w [N]`` (how often each image was drawn). AUC is the
Mann-Whitney statistic with those weights (ties count one half; equal to the AUC of the
resampled arrays), accuracy and balanced accuracy are weighted means, so a thousand
resamples cost a few matrix products rather than a thousand metric calls.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from medssl.errors import ConfigError, EvaluationError
from medssl.eval.metrics import predict_labels
from medssl.eval.validate import check_predictions

METRICS = ("auc", "accuracy", "balanced_accuracy")
CHUNK_CELLS = 4_000_000  # resamples x images held at once (32 MB of float64)


def resample_counts(y: np.ndarray, n_boot: int, seed: int, stratified: bool = True) -> Iterator[np.ndarray]:
    """Chunks ``[b, N]`` float64 of the counts of ``n_boot`` bootstrap resamples of ``y``'s rows.

    Resample ``b`` draws, for each class in sorted order (``stratified`` and single-label
    ``y``), as many rows as the class has, with replacement, from
    ``numpy.random.default_rng(seed)``: the draws of ``bootstrap_ci`` with the same seed.
    """
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)]
    if stratified and y.ndim == 1:
        groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    step = max(1, CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        rows = min(step, n_boot - start)
        out = np.empty((rows, n))
        for r in range(rows):
            idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
            out[r] = np.bincount(idx, minlength=n)
        yield out


def _weighted_auc(w: np.ndarray, pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC of one column under each weight row of ``w [B, N]`` (NaN where a side is empty)."""
    order = np.argsort(score, kind="stable")
    s_sorted = score[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # tie groups
    ws = w[:, order]
    p = np.add.reduceat(ws * pos[order], starts, axis=1)
    q = np.add.reduceat(ws * (~pos[order]), starts, axis=1)
    below = np.cumsum(q, axis=1) - q
    num = (p * (below + 0.5 * q)).sum(axis=1)
    den = p.sum(axis=1) * q.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def weighted_metrics(y: np.ndarray, s: np.ndarray, task: str, w: np.ndarray) -> Dict[str, np.ndarray]:
    """``{metric: [B]}`` of checked ``(y, s, task)`` under each weight row of ``w [B, N]``."""
    pred = predict_labels(s, task)
    if task == "multilabel":
        truth, hard = y.astype(bool), pred.astype(bool)
        per_image = (hard == truth).mean(axis=1)
    else:
        c = s.shape[1]
        truth = y[:, None] == np.arange(c)[None, :]
        hard = pred[:, None] == np.arange(c)[None, :]
        per_image = (pred == y).astype(np.float64)
    total = w.sum(axis=1)
    acc = (w @ per_image) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (w @ (truth & hard)) / (w @ truth)  # [B, C]
        if task == "multilabel":
            spec = (w @ (~truth & ~hard)) / (w @ ~truth)
            both = np.stack([sens, spec])
            per_label = np.where(np.all(np.isnan(both), 0), np.nan, np.nanmean(both, 0))
        else:
            per_label = sens
    valid = ~np.isnan(per_label)
    bal = np.where(valid.any(1), np.nansum(per_label, 1) / np.maximum(valid.sum(1), 1), np.nan)
    if task == "binary":
        auc = _weighted_auc(w, y == 1, s[:, -1])
    else:
        cols = [_weighted_auc(w, truth[:, j], s[:, j]) for j in range(truth.shape[1])]
        auc = np.mean(np.stack(cols), axis=0)  # NaN if any class is undefined, as metrics.auc
    return {"auc": auc, "accuracy": acc, "balanced_accuracy": bal}


def bootstrap_seed_means(y_true: np.ndarray, groups: Sequence[Sequence[np.ndarray]], task: str,
                         n_boot: int = 1000, seed: int = 0
                         ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Per metric: ``(point [G], per-seed values [G, S], resampled seed means [G, B])``.

    ``groups`` is one list of per-seed test scores ``[N, C]`` per encoder (each list as long
    as the others, seeds in the same order); every group is scored on the same ``y_true``
    and on the same resamples. A seed mean is NaN when a seed's metric is.
    """
    if not groups or not groups[0]:
        raise EvaluationError("bootstrap_seed_means: no predictions given")
    n_seeds = len(groups[0])
    if any(len(g) != n_seeds for g in groups):
        raise EvaluationError("bootstrap_seed_means: every encoder needs the same seeds")
    checked: List[List[np.ndarray]] = []
    y = task_name = None
    for g in groups:
        row = []
        for s in g:
            y, sc, task_name = check_predictions(y_true, s, task)
            row.append(sc)
        checked.append(row)
    assert y is not None and task_name is not None
    ones = np.ones((1, y.shape[0]))
    per_seed = {m: np.empty((len(groups), n_seeds)) for m in METRICS}
    for gi, g in enumerate(checked):
        for si, sc in enumerate(g):
            for m, v in weighted_metrics(y, sc, task_name, ones).items():
                per_seed[m][gi, si] = v[0]
    boots: Dict[str, List[np.ndarray]] = {m: [] for m in METRICS}
    for w in resample_counts(y, n_boot, seed, stratified=task_name != "multilabel"):
        chunk = {m: np.zeros((len(groups), w.shape[0])) for m in METRICS}
        for gi, g in enumerate(checked):
            for sc in g:
                for m, v in weighted_metrics(y, sc, task_name, w).items():
                    chunk[m][gi] += v / n_seeds
        for m in METRICS:
            boots[m].append(chunk[m])
    point = {m: per_seed[m].mean(axis=1) for m in METRICS}
    return point, per_seed, {m: np.concatenate(boots[m], axis=1) for m in METRICS}


def percentile_ci(values: np.ndarray, alpha: float = 0.05) -> Tuple[float, float, int]:
    """``(low, high, n_valid)``: the percentile interval of the non-NaN ``values``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    lo, hi = np.quantile(v, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi), int(v.size)


def paired_summary(boot_a: np.ndarray, boot_b: np.ndarray, seeds_a: np.ndarray, seeds_b: np.ndarray,
                   alpha: float = 0.05) -> Dict[str, object]:
    """``a - b`` of two encoders scored on the same resamples, subsets and seeds:
    ``difference`` (of the seed means), its paired bootstrap ``ci`` over test images, and
    the per-seed differences with their sample sd (the spread over seeds)."""
    per_seed = np.asarray(seeds_a, np.float64) - np.asarray(seeds_b, np.float64)
    lo, hi, n = percentile_ci(np.asarray(boot_a) - np.asarray(boot_b), alpha)
    finite = per_seed[~np.isnan(per_seed)]
    return {
        "difference": _num(float(np.mean(per_seed))) if finite.size == per_seed.size else None,
        "ci": [_num(lo), _num(hi)],
        "n_boot_valid": n,
        "per_seed": [_num(float(v)) for v in per_seed],
        "sd_over_seeds": _num(float(np.std(finite, ddof=1))) if finite.size > 1 else (0.0 if finite.size else None),
    }


def _num(v: float):
    return None if v is None or math.isnan(v) else float(v)
