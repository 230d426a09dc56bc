"""What the seeds of a transfer evaluation vary, and the interval of the mean over seeds.

A seed of :func:`medssl.eval.transfer.run_transfer` draws the label subset and drives
the random steps of the protocol. Where neither exists (every labelled item used and a
deterministic protocol) more seeds are copies of one run: :func:`seed_invariance` says
so before anything runs, and the evaluation runs one seed instead of reporting a spread
of copies. :func:`seed_variation` describes what the seeds do vary, for the report.

:func:`pooled_bootstrap_ci` is the interval of the number report.md shows, the mean over
seeds: each stratified bootstrap resample of the test set scores *every* seed's
predictions on the same resampled items and averages the metric over the seeds. It
measures the test set's sampling, given the trained probes; the sd across seeds beside
it measures the seeds. With one seed it equals that seed's own interval.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from medssl.errors import EvaluationError
from medssl.eval.metrics import accuracy, auc, bootstrap_ci

CI_METRICS = ("auc", "accuracy")


def _subset_is_everything(labels: np.ndarray, subset_size: int) -> bool:
    """True when the label subset holds every labelled train item (so no seed changes it)."""
    y = np.asarray(labels)
    labelled = y.shape[0] if y.ndim == 2 and y.shape[1] > 1 else int(np.sum(y.reshape(y.shape[0], -1)[:, 0] >= 0))
    return subset_size >= labelled


def _linear_selects(weight_decay: Any) -> bool:
    """True when the linear probe picks its weight decay on a seeded held-out split."""
    return isinstance(weight_decay, str) or (isinstance(weight_decay, (list, tuple)) and len(weight_decay) > 1)


def seed_invariance(protocol: str, weight_decay: Any, labels: np.ndarray, subset_size: int) -> Optional[str]:
    """Why every seed would give the same predictions, or ``None`` when seeds differ.

    Seeds are copies when the subset is every labelled item and the protocol has no random
    step: the kNN vote, or the linear probe with one fixed weight decay (L-BFGS from zero).
    """
    if not _subset_is_everything(labels, subset_size):
        return None
    if protocol == "knn":
        return "the kNN vote has no random step"
    if protocol == "linear" and not _linear_selects(weight_decay):
        return f"the linear probe with a fixed weight decay ({weight_decay}) is fit deterministically from zero"
    return None


def seed_variation(protocol: str, weight_decay: Any, labels: np.ndarray, subset_size: int) -> Optional[str]:
    """A note when the subset is every labelled item but seeds still differ, saying what they vary."""
    if not _subset_is_everything(labels, subset_size):
        return None
    if protocol == "linear" and _linear_selects(weight_decay):
        return ("every seed trains on all labelled train items; the seeds differ only in the held-out split "
                "that chooses the weight decay (and the warm start it gives), so the sd across seeds measures "
                "that choice, not label sampling")
    if protocol == "finetune":
        return ("every seed trains on all labelled train items; the seeds differ in the fine-tuning's shuffling "
                "and augmentation only")
    return None


def invariance_note(n_requested: int, why: str) -> str:
    """The report note when :func:`seed_invariance` cut the seeds to one."""
    return (f"{n_requested} seeds were asked for and one was run: the label subset is every labelled train item "
            f"and {why}, so every seed would give the same predictions (a spread of copies, ± 0). The CI is "
            "that seed's test-set bootstrap")


def identical_predictions(scores: Sequence[np.ndarray]) -> bool:
    """True when two or more seeds gave bit-identical test scores."""
    return len(scores) > 1 and all(np.array_equal(scores[0], s) for s in scores[1:])


def _metric(key: str, task: str, threshold: float) -> Any:
    if key == "auc":
        return lambda y, s: auc(y, s, task)
    return lambda y, s: accuracy(y, s, task, threshold)


def pooled_bootstrap_ci(y_true: np.ndarray, scores: Sequence[np.ndarray], task: str, n_boot: int,
                        alpha: float = 0.05, seed: int = 0, threshold: float = 0.5,
                        metrics: Sequence[str] = CI_METRICS) -> Dict[str, Dict[str, Any]]:
    """``{metric: {"ci": [low, high] or None, "n_boot", "n_skipped", "seeds_used"}}`` of
    the mean over seeds, as the module docstring describes.

    ``y_true`` ``[N]`` / ``[N, C]`` is the test labels every seed scored; ``scores`` one
    ``[N, C]`` array per seed. A seed whose metric is undefined on the whole test set is
    left out (as in the mean); resamples where a used seed's metric is undefined are skipped.
    """
    y = np.asarray(y_true)
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in scores], axis=1)  # [N, seeds, C]
    out: Dict[str, Dict[str, Any]] = {}
    for key in metrics:
        fn = _metric(key, task, threshold)
        used = [k for k in range(stacked.shape[1]) if _defined(fn, y, stacked[:, k])]
        if not used:
            out[key] = {"ci": None, "n_boot": int(n_boot), "n_skipped": int(n_boot), "seeds_used": 0}
            continue

        def mean_over_seeds(yb: np.ndarray, sb: np.ndarray, fn: Any = fn, used: List[int] = used) -> float:
            return float(np.mean([fn(yb, sb[:, k]) for k in used]))

        ci = bootstrap_ci(mean_over_seeds, y, stacked, n_boot, alpha, seed)
        valid = not (math.isnan(ci.low) or math.isnan(ci.high))
        out[key] = {"ci": [float(ci.low), float(ci.high)] if valid else None, "n_boot": int(n_boot),
                    "n_skipped": int(ci.n_skipped), "seeds_used": len(used)}
    return out


def _defined(fn: Any, y: np.ndarray, s: np.ndarray) -> bool:
    """True when the metric has a value on the whole test set (as bootstrap_ci's point)."""
    try:
        return not math.isnan(float(fn(y, s)))
    except (EvaluationError, ValueError, ZeroDivisionError):
        return False


def seeds_to_run(cfg: Any, train_labels: np.ndarray) -> tuple:
    """``(seeds, notes)`` for a :class:`~medssl.eval.config.TransferConfig`: its
    ``seed_list()``, or only the first seed when :func:`seed_invariance` finds the seeds
    would be copies; ``notes`` say which and why."""
    from medssl.eval.subsets import stratified_fraction_plan

    seeds = cfg.seed_list()
    size = stratified_fraction_plan(train_labels, cfg.label_fraction, cfg.seed, cfg.min_per_class).indices.size
    why = seed_invariance(cfg.protocol, cfg.linear.weight_decay, train_labels, size)
    if why is not None and len(seeds) > 1:
        return seeds[:1], [invariance_note(len(seeds), why)]
    varies = seed_variation(cfg.protocol, cfg.linear.weight_decay, train_labels, size) if len(seeds) > 1 else None
    return seeds, [varies] if varies else []


def across_seeds(aggregate: Dict[str, Any], y_true: np.ndarray, scores: Sequence[np.ndarray], task: str,
                 n_boot: int, seed: int) -> List[str]:
    """Adds the pooled interval of the mean (``aggregate[metric]["ci"]``) for
    :data:`CI_METRICS`; returns a note when the seeds' predictions are identical."""
    for key, value in pooled_bootstrap_ci(y_true, scores, task, n_boot, seed=seed).items():
        aggregate[key]["ci"] = value["ci"]
    if identical_predictions(scores):
        return [f"all {len(scores)} seeds gave identical test predictions, so their sd of 0 says nothing about "
                "stability: nothing random in this protocol changed the fit"]
    return []


def format_mean_sd(entry: Mapping[str, Any]) -> str:
    """``mean ± sd (n=seeds)`` of an aggregate entry; no sd where there is no spread to show
    (one seed, or the same value on every seed)."""
    if entry.get("mean") is None:
        return "n/a (undefined)"
    if entry.get("n") == 1:
        return f"{entry['mean']:.3f} (one seed)"
    if entry.get("same_on_all_seeds"):  # a spread of 0 over copies is no spread
        return f"{entry['mean']:.3f} (the same on all {entry['n']} seeds)"
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f} (n={entry['n']})"
