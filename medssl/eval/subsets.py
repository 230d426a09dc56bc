"""Stratified label fractions (e.g. 1 % / 10 % of the labels) and their index files.

Sampling rule (docs/evaluation.md): labelled items (label >= 0) are grouped into strata
(class for single-label targets, the exact label set for multilabel ones). The target
size is ``round(fraction * n_labelled)`` (at least 1), shared out over strata in
proportion to their size by the largest-remainder method (ties: lower stratum first).
Then every class gets at least ``min_per_class`` items, or all it has. Within a stratum
the items taken are the first ones of a seeded permutation (one
``numpy.random.default_rng(seed)`` stream, strata in sorted order), so with the same
seed a larger fraction keeps the items of a smaller one whenever it takes at least as
many from every stratum.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from medssl.errors import ConfigError, DataError, EvaluationError
from medssl.fileio import PathLike
from medssl.text import no_such_file

log = logging.getLogger(__name__)
FORMAT = "medssl-indices/1"


@dataclass
class FractionPlan:
    """A sampled label fraction: sorted ``indices`` into the label array, plus bookkeeping."""

    indices: np.ndarray
    fraction: float
    seed: int
    min_per_class: int
    target: int
    class_counts: Dict[str, int] = field(default_factory=dict)  # per class in the data
    taken: Dict[str, int] = field(default_factory=dict)  # per class in the subset
    notes: List[str] = field(default_factory=list)

    def meta(self) -> Dict[str, Any]:
        """JSON-friendly description (for :func:`save_indices`)."""
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "min_per_class": self.min_per_class,
            "target": self.target,
            "size": int(self.indices.size),
            "class_counts": self.class_counts,
            "taken": self.taken,
            "notes": self.notes,
        }


def _largest_remainder(sizes: np.ndarray, target: int) -> np.ndarray:
    """Integer shares of ``target`` proportional to ``sizes`` summing exactly to ``target``."""
    quota = sizes * (target / sizes.sum())
    share = np.floor(quota).astype(np.int64)
    rest = target - int(share.sum())
    # stable sort on -remainder: equal remainders go to the lower stratum first
    order = np.argsort(-(quota - share), kind="stable")
    share[order[:rest]] += 1
    return np.minimum(share, sizes)


def _strata(labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, bool]:
    """``(labelled_idx, stratum_id_per_labelled_item, multilabel)``."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 1:
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise EvaluationError("labels: class labels must be whole numbers")
        lab = labels.astype(np.int64)
        keep = np.flatnonzero(lab >= 0)
        return keep, lab[keep], False
    if labels.ndim == 2:
        if not np.all((labels == 0) | (labels == 1)):
            raise EvaluationError("labels: multilabel targets (N, C) must be 0 or 1")
        _, sid = np.unique(labels.astype(np.int8), axis=0, return_inverse=True)
        return np.arange(labels.shape[0]), sid.reshape(-1), True
    raise EvaluationError(f"labels: expected shape (N,), (N, 1) or (N, C), got {labels.shape}")


def stratified_fraction_plan(
    labels: Any, fraction: float, seed: int = 0, min_per_class: int = 1
) -> FractionPlan:
    """Sample a stratified ``fraction`` of the labelled items; see the module docstring.

    ``labels``: ``(N,)`` / ``(N, 1)`` ints (``-1`` = unlabelled, never taken) or
    ``(N, C)`` 0/1 multilabel (strata = label sets; ``min_per_class`` then counts the
    positives of each label). ``fraction`` in (0, 1]. The plan's ``notes`` say when the
    minimum per class made the subset larger than the target or a class had fewer items
    than the minimum.
    """
    if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) <= 1.0):
        raise ConfigError(f"label fraction must be in (0, 1], got {fraction!r} (use 0.01 for 1 %)")
    if int(min_per_class) != min_per_class or min_per_class < 0:
        raise ConfigError(f"min_per_class must be a whole number >= 0, got {min_per_class!r}")
    arr = np.asarray(labels)
    keep, sid, multilabel = _strata(arr)
    if keep.size == 0:
        raise EvaluationError("labels: no labelled item (all are -1); cannot take a label fraction")
    notes: List[str] = []
    if keep.size < arr.shape[0]:
        notes.append(f"{arr.shape[0] - keep.size} unlabelled item(s) (label -1) excluded")

    strata = np.unique(sid)
    sizes = np.array([np.sum(sid == s) for s in strata], dtype=np.int64)
    target = max(1, int(math.floor(float(fraction) * keep.size + 0.5)))
    share = _largest_remainder(sizes, target)
    rng = np.random.default_rng(seed)
    perms = [keep[rng.permutation(np.flatnonzero(sid == s))] for s in strata]
    chosen = set(np.concatenate([p[:k] for p, k in zip(perms, share)]).tolist())

    if multilabel:
        y = arr.astype(np.int64)
        names = [str(c) for c in range(y.shape[1])]
        counts = y[keep].sum(axis=0)
        for c in range(y.shape[1]):
            need = min(min_per_class, int(counts[c])) - int(y[sorted(chosen), c].sum())
            if need > 0:  # add positives of label c, in permutation order
                extra = [i for p in perms for i in p.tolist() if y[i, c] == 1 and i not in chosen]
                chosen.update(extra[:need])
    else:
        names = [str(int(s)) for s in strata]
        counts = sizes
        for p, k, n in zip(perms, share, sizes):
            chosen.update(p[: max(k, min(min_per_class, n))].tolist())

    idx = np.array(sorted(chosen), dtype=np.int64)
    if multilabel:
        taken = y[idx].sum(axis=0)
    else:
        lab = arr.reshape(arr.shape[0], -1)[:, 0].astype(np.int64)
        taken = np.array([np.sum(lab[idx] == int(s)) for s in strata])
    short = [f"{n} ({int(k)})" for n, k in zip(names, counts) if 0 < k < min_per_class]
    if short:
        notes.append(f"class(es) with fewer than min_per_class={min_per_class} items, all taken: {', '.join(short)}")
    if idx.size > target:
        notes.append(
            f"min_per_class={min_per_class} dominates: took {idx.size} items instead of the "
            f"target {target} (= {fraction} x {keep.size})"
        )
    return FractionPlan(
        indices=idx, fraction=float(fraction), seed=int(seed), min_per_class=int(min_per_class),
        target=target, class_counts={n: int(k) for n, k in zip(names, counts)},
        taken={n: int(k) for n, k in zip(names, taken)}, notes=notes,
    )


def per_class_plan(labels: Any, per_class: int, seed: int = 0) -> FractionPlan:
    """Sample ``per_class`` labelled items of every class (all of a class that has fewer).

    Single-label targets only. The draw uses the same seeded stream as
    :func:`stratified_fraction_plan` (one permutation per class, classes in sorted order,
    the first items taken), so with one seed a larger count keeps the items of a smaller
    one. The plan's ``fraction`` is the share of the labelled items taken.
    """
    if int(per_class) != per_class or per_class < 1:
        raise ConfigError(f"labels per class must be a whole number >= 1, got {per_class!r}")
    arr = np.asarray(labels)
    keep, sid, multilabel = _strata(arr)
    if multilabel:
        raise ConfigError("labels_per_class needs a single-label target (a multilabel item belongs to several "
                          "classes); use label_fractions for multilabel data")
    if keep.size == 0:
        raise EvaluationError("labels: no labelled item (all are -1); cannot take labels per class")
    rng = np.random.default_rng(seed)
    strata = np.unique(sid)
    perms = [keep[rng.permutation(np.flatnonzero(sid == s))] for s in strata]
    idx = np.sort(np.concatenate([p[: int(per_class)] for p in perms])).astype(np.int64)
    names = [str(int(s)) for s in strata]
    counts = [int(p.size) for p in perms]
    short = [f"{n} ({k})" for n, k in zip(names, counts) if k < per_class]
    notes = [f"class(es) with fewer than {int(per_class)} items, all taken: {', '.join(short)}"] if short else []
    return FractionPlan(
        indices=idx, fraction=float(idx.size / keep.size), seed=int(seed), min_per_class=int(per_class),
        target=int(per_class) * len(strata), class_counts=dict(zip(names, counts)),
        taken={n: min(k, int(per_class)) for n, k in zip(names, counts)}, notes=notes,
    )


def stratified_fraction(labels: Any, fraction: float, seed: int = 0, min_per_class: int = 1) -> np.ndarray:
    """Sorted int64 indices of a stratified label fraction (see
    :func:`stratified_fraction_plan`, whose notes are logged as warnings here)."""
    plan = stratified_fraction_plan(labels, fraction, seed, min_per_class)
    for note in plan.notes:
        log.warning("label fraction %s: %s", fraction, note)
    return plan.indices


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_indices(path: PathLike, indices: Any, meta: Optional[Dict[str, Any]] = None) -> Path:
    """Write indices (and JSON-serialisable ``meta``) to ``path``.

    ``*.npy``: the indices as int64 ``.npy`` plus ``meta`` in a sibling ``*.json``; any
    other suffix: one JSON file ``{"format", "indices", "meta"}``. Returns ``path``.
    """
    p = Path(path)
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise EvaluationError(f"indices must be a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    from medssl.fileio import atomic_write, atomic_write_text

    body = {"format": FORMAT, "meta": meta or {}}
    if p.suffix == ".npy":
        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:  # a file object, so np.save does not append ".npy" to the temporary
                np.save(fh, idx)

        atomic_write(p, write, "the label subset")
        atomic_write_text(_meta_path(p), json.dumps(body, indent=1), "the label subset")
    else:
        body["indices"] = idx.tolist()
        atomic_write_text(p, json.dumps(body), "the label subset")
    return p


def load_indices(path: PathLike) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Read what :func:`save_indices` wrote: ``(int64 indices, meta)``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(no_such_file("index file", p, "create it with medssl.eval.subsets.save_indices"))
    try:
        if p.suffix == ".npy":
            idx = np.load(p, allow_pickle=False)
            mp = _meta_path(p)
            body = json.loads(mp.read_text()) if mp.is_file() else {"meta": {}}
        else:
            body = json.loads(p.read_text())
            idx = np.asarray(body["indices"])
        meta = dict(body.get("meta", {}))
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise DataError(f"index file {p} is not a medssl index file ({exc}); re-create it with save_indices") from exc
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise DataError(f"index file {p}: indices must be a 1-D list of integers")
    return idx.astype(np.int64), meta
