"""Linear probe: a logistic-regression classifier trained on frozen embeddings.

Protocol (quoted in docs/evaluation.md): features are standardised with the training
mean / std; a linear layer ``z = x W + b`` is fit full-batch with L-BFGS (strong Wolfe
line search, at most ``max_iter`` iterations) on the mean loss plus
``weight_decay / 2 * ||W||^2`` (bias not penalised): softmax cross-entropy for binary /
multiclass / ordinal, per-label sigmoid BCE (summed over labels) for multilabel. With
``weight_decay="auto"`` each value of :data:`DEFAULT_WEIGHT_DECAYS` is fit on a
stratified 80 % of train (strongest first, each fit warm-started from the previous one)
and the value with the lowest loss on the other 20 % is refit on all of train, starting
from its 80 % solution. Everything is deterministic: the seed fixes the held-out split,
and the first fit starts from zero weights.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from medssl.errors import ConfigError, EvaluationError
from medssl.eval.metrics import evaluate_predictions
from medssl.eval.validate import multilabel_targets, normalise_task, single_labels

DEFAULT_WEIGHT_DECAYS: Tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
FALLBACK_WEIGHT_DECAY = 1e-3  # used when the training set is too small to hold any out
MIN_VAL_SAMPLES = 10
# Below this many multiply-adds per pass (N * D * C) one thread is much faster: thread
# hand-off dominates, and badly so on a busy machine (0.02 s vs 1 s for a 90 x 10 fit).
SINGLE_THREAD_WORK = 20_000_000

WeightDecay = Union[str, float, Sequence[float]]


@dataclass
class LinearModel:
    """A fitted probe: standardisation constants and the linear layer (numpy, float32)."""

    task: str
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    weight: np.ndarray  # (D, C)
    bias: np.ndarray  # (C,)
    n_iter: int = 0

    def logits(self, emb: Any) -> np.ndarray:
        x = _features(emb, "emb", self.mean.shape[0])
        return ((x - self.mean) / self.std) @ self.weight + self.bias

    def predict_proba(self, emb: Any) -> np.ndarray:
        """Probabilities ``(M, C)``: softmax rows (single-label) or per-label sigmoid."""
        z = torch.from_numpy(self.logits(emb).astype(np.float64))
        p = torch.sigmoid(z) if self.task == "multilabel" else torch.softmax(z, dim=1)
        return p.numpy()


@dataclass
class LinearProbeResult:
    """Test scores ``(M, C)``, the metrics dict, the model and how it was chosen."""

    scores: np.ndarray
    metrics: Dict[str, Any]
    model: LinearModel
    weight_decay: float
    selection: List[Dict[str, float]] = field(default_factory=list)
    protocol: Dict[str, Any] = field(default_factory=dict)


def _features(x: Any, name: str, dim: Optional[int] = None) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] == 0:
        raise EvaluationError(f"{name}: expected embeddings of shape (N, D) with N > 0, got {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise EvaluationError(f"{name}: expected dimension {dim} (as in training), got {a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise EvaluationError(f"{name}: embeddings contain NaN or infinite values")
    return a


def _targets(y: Any, task: str, name: str) -> np.ndarray:
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    return multilabel_targets(y, name) if task == "multilabel" else single_labels(y, name)


@contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """Run small fits on one torch thread, restoring the setting afterwards."""
    before = torch.get_num_threads()
    if work < SINGLE_THREAD_WORK and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _loss(z: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(z, y, reduction="sum") / z.shape[0]
    return F.cross_entropy(z, y)


def fit_linear(
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    num_classes: int,
    weight_decay: float,
    max_iter: int = 100,
    init: Optional[LinearModel] = None,
) -> LinearModel:
    """Fit the probe on ``x`` ``(N, D)`` float32 and checked targets ``y`` (see module doc).

    ``init`` warm-starts L-BFGS (used along the weight-decay grid); it does not change the
    optimum, only how fast it is reached.
    """
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-8] = 1.0  # constant features carry nothing; avoid dividing by ~0
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y.astype(np.float32) if task == "multilabel" else y)
    d = x.shape[1]
    w = torch.zeros(d, num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    if init is not None:
        with torch.no_grad():
            w.copy_(torch.from_numpy(init.weight))
            b.copy_(torch.from_numpy(init.bias))
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=10,
                            tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss(xt @ w + b, yt, task) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with _threads_for(x.shape[0] * d * num_classes):
        opt.step(closure)
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    return LinearModel(task, mean, std, w.detach().numpy().copy(), b.detach().numpy().copy(), n_iter)


def _holdout_split(y: np.ndarray, task: str, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Train / validation indices: per class, ``floor(fraction * n_c)`` go to validation
    (so classes with few examples stay in train); multilabel: a plain random split."""
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    if task == "multilabel":
        perm = rng.permutation(n)
        n_val = int(math.floor(fraction * n))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        val.append(idx[: int(math.floor(fraction * idx.size))])
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(n), val_idx), val_idx


def _val_loss(model: LinearModel, x: np.ndarray, y: np.ndarray, task: str) -> Tuple[float, float]:
    z = torch.from_numpy(model.logits(x).astype(np.float64))
    yt = torch.from_numpy(y.astype(np.float64) if task == "multilabel" else y)
    loss = float(_loss(z, yt, task))
    if task == "multilabel":
        acc = float(((z > 0).long() == yt.long()).double().mean())
    else:
        acc = float((z.argmax(1) == yt).double().mean())
    return loss, acc


def select_weight_decay(
    x: np.ndarray, y: np.ndarray, task: str, num_classes: int, grid: Sequence[float],
    val_fraction: float, seed: int, max_iter: int,
) -> Tuple[float, List[Dict[str, float]], str, Optional[LinearModel]]:
    """Pick the grid value with the lowest held-out loss (ties: the larger value).

    Returns ``(weight_decay, table, note, model)``: ``note`` is non-empty when the
    held-out part was too small and :data:`FALLBACK_WEIGHT_DECAY` was used instead;
    ``model`` is the chosen fit on the reduced train part (a warm start for the refit).
    """
    tr, va = _holdout_split(y, task, val_fraction, seed)
    if va.size < MIN_VAL_SAMPLES or tr.size == 0:
        return FALLBACK_WEIGHT_DECAY, [], (
            f"held-out part too small ({va.size} < {MIN_VAL_SAMPLES} samples): "
            f"weight_decay fixed at {FALLBACK_WEIGHT_DECAY}"
        ), None
    table: List[Dict[str, float]] = []
    model: Optional[LinearModel] = None
    fits = []
    for wd in sorted(grid, reverse=True):  # strong to weak, warm-starting each fit
        model = fit_linear(x[tr], y[tr], task, num_classes, wd, max_iter, init=model)
        loss, acc = _val_loss(model, x[va], y[va], task)
        table.append({"weight_decay": float(wd), "val_loss": loss, "val_accuracy": acc})
        fits.append(model)
    best = min(range(len(table)), key=lambda i: (table[i]["val_loss"], -table[i]["weight_decay"]))
    return table[best]["weight_decay"], table, "", fits[best]


def linear_probe(
    train_emb: Any,
    train_y: Any,
    test_emb: Any,
    test_y: Any,
    task: str,
    weight_decay: WeightDecay = "auto",
    max_iter: int = 100,
    val_fraction: float = 0.2,
    seed: int = 0,
    num_classes: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    ci: bool = False,
    n_boot: int = 1000,
) -> LinearProbeResult:
    """Train the probe on ``train_emb`` ``(N, D)`` and score ``test_emb`` ``(M, D)``.

    ``weight_decay``: a float (used as is), a sequence (grid) or ``"auto"``
    (:data:`DEFAULT_WEIGHT_DECAYS`); a grid is searched on a stratified ``val_fraction``
    of train (split seeded by ``seed``), then the probe is refit on all of train.
    ``num_classes`` defaults to 2 (binary), the number of target columns (multilabel) or
    the largest label in train / test plus one. Returns test probabilities ``(M, C)`` and
    :func:`evaluate_predictions` metrics (with ``protocol`` added).
    """
    task = normalise_task(task)
    x = _features(train_emb, "train_emb")
    xq = _features(test_emb, "test_emb", x.shape[1])
    y = _targets(train_y, task, "train_y")
    yq = _targets(test_y, task, "test_y")
    if y.shape[0] != x.shape[0] or yq.shape[0] != xq.shape[0]:
        raise EvaluationError(
            f"labels and embeddings disagree: train {y.shape[0]} vs {x.shape[0]} rows, "
            f"test {yq.shape[0]} vs {xq.shape[0]} rows"
        )
    if max_iter < 1:
        raise ConfigError(f"linear probe max_iter must be >= 1, got {max_iter}")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"linear probe val_fraction must be in (0, 1), got {val_fraction}")
    if task == "multilabel":
        c = y.shape[1]
    elif num_classes is not None:
        c = int(num_classes)
    else:
        c = 2 if task == "binary" else int(max(y.max(), yq.max())) + 1
    if task != "multilabel" and max(y.max(), yq.max()) >= c:
        raise EvaluationError(f"label {int(max(y.max(), yq.max()))} out of range for num_classes={c}")
    notes: List[str] = []
    if task != "multilabel":
        missing = sorted(set(range(c)) - set(np.unique(y).tolist()))
        if missing:
            notes.append(f"class(es) {missing} absent from the probe's training labels")

    if isinstance(weight_decay, str):
        if weight_decay != "auto":
            raise ConfigError(f"linear probe weight_decay must be 'auto', a number or a list, got {weight_decay!r}")
        grid: Sequence[float] = DEFAULT_WEIGHT_DECAYS
    elif isinstance(weight_decay, (int, float)):
        grid = [float(weight_decay)]
    else:
        grid = [float(v) for v in weight_decay]
    if not grid or any(v < 0 for v in grid):
        raise ConfigError(f"linear probe weight_decay values must be >= 0, got {list(grid)}")

    table: List[Dict[str, float]] = []
    warm: Optional[LinearModel] = None
    if len(grid) == 1:
        wd = grid[0]
    else:
        wd, table, note, warm = select_weight_decay(x, y, task, c, grid, val_fraction, seed, max_iter)
        if note:
            notes.append(note)
    model = fit_linear(x, y, task, c, wd, max_iter, init=warm)
    scores = model.predict_proba(xq)
    metrics = evaluate_predictions(yq, scores, task, class_names, ci=ci, n_boot=n_boot, seed=seed)
    protocol = {
        "method": "linear probe (logistic regression)",
        "features": "standardised with train mean/std",
        "optimizer": "full-batch L-BFGS, strong Wolfe, zero init",
        "loss": "sigmoid BCE" if task == "multilabel" else "softmax cross-entropy",
        "weight_decay": wd,
        "weight_decay_grid": list(grid),
        "selection": "lowest held-out loss" if table else "fixed",
        "val_fraction": val_fraction if table else None,
        "max_iter": max_iter,
        "n_iter": model.n_iter,
        "seed": seed,
        "n_train": int(x.shape[0]),
    }
    metrics["protocol"] = protocol
    metrics["warnings"] = list(metrics["warnings"]) + notes
    return LinearProbeResult(scores, metrics, model, wd, table, protocol)
