"""Weighted k-nearest-neighbour classifier on frozen embeddings (InstDisc / DINO style).

For each query: cosine similarity to every training embedding, keep the ``k`` most
similar, weight each by ``exp(sim / T)`` and score class ``c`` by the weight share of
neighbours labelled ``c``. Scores are probabilities (rows sum to 1; for multilabel
targets, the weighted mean of the neighbours' 0/1 label vectors).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medssl.errors import ConfigError, EvaluationError
from medssl.eval.metrics import evaluate_predictions
from medssl.eval.validate import normalise_task


def _as_tensor(x: Any, name: str, device: Optional[torch.device] = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if device is not None:
        t = t.to(device)
    return t


def _embeddings(x: Any, name: str, device: Optional[torch.device] = None) -> torch.Tensor:
    t = _as_tensor(x, name, device)
    if t.ndim != 2 or t.shape[0] == 0:
        raise EvaluationError(f"{name}: expected embeddings of shape (N, D) with N > 0, got {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    if not torch.isfinite(t).all():
        raise EvaluationError(f"{name}: embeddings contain NaN or infinite values")
    return t


def _label_matrix(labels: torch.Tensor, num_classes: Optional[int], n: int) -> torch.Tensor:
    """``(N, C)`` float targets: one-hot of int labels, or multilabel 0/1 as given."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape[0] != n:
        raise EvaluationError(f"train_labels has {labels.shape[0]} rows but train_emb has {n}")
    if labels.ndim == 2:  # multilabel (N, C)
        if num_classes is not None and labels.shape[1] != num_classes:
            raise EvaluationError(f"train_labels has {labels.shape[1]} labels but num_classes={num_classes}")
        if not ((labels == 0) | (labels == 1)).all():
            raise EvaluationError("train_labels: multilabel targets must be 0 or 1")
        return labels.float()
    if labels.ndim != 1:
        raise EvaluationError(f"train_labels: expected shape (N,), (N, 1) or (N, C), got {tuple(labels.shape)}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise EvaluationError("train_labels: class labels must be whole numbers")
    labels = labels.long()
    if int(labels.min()) < 0:
        raise EvaluationError("train_labels: negative label (-1 = unlabelled); pass labelled items only")
    c = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if int(labels.max()) >= c:
        raise EvaluationError(f"train_labels: label {int(labels.max())} out of range for num_classes={c}")
    return F.one_hot(labels, c).float()


@torch.no_grad()
def knn_predict(
    train_emb: Any,
    train_labels: Any,
    query_emb: Any,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: Optional[int] = None,
    chunk_size: int = 1024,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Weighted kNN class scores ``(M, C)`` (float32, rows sum to 1 for single-label).

    ``train_emb`` ``(N, D)``, ``query_emb`` ``(M, D)``: any scale (they are L2-normalised
    here). ``train_labels``: ``(N,)`` / ``(N, 1)`` ints, or ``(N, C)`` 0/1 multilabel.
    ``k`` is clamped to ``N``; ``C`` is ``num_classes`` or ``max label + 1``. Queries are
    processed ``chunk_size`` at a time on the device of ``query_emb`` (CPU or CUDA), so
    memory is ``O(chunk_size * N)``. Nothing is excluded unless ``exclude_self=True``,
    which requires the query set to *be* the training set (``M == N``, same order) and
    drops each query's own row (leave-one-out).
    """
    if k < 1:
        raise ConfigError(f"knn k must be >= 1, got {k}")
    if temperature <= 0:
        raise ConfigError(f"knn temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ConfigError(f"knn chunk_size must be >= 1, got {chunk_size}")
    query = _embeddings(query_emb, "query_emb")
    device = query.device
    bank = _embeddings(train_emb, "train_emb", device)
    if bank.shape[1] != query.shape[1]:
        raise EvaluationError(
            f"train_emb has dimension {bank.shape[1]} but query_emb has {query.shape[1]}"
        )
    n = bank.shape[0]
    if exclude_self and query.shape[0] != n:
        raise ConfigError(f"exclude_self needs query_emb to be train_emb (got {query.shape[0]} vs {n} rows)")
    targets = _label_matrix(_as_tensor(train_labels, "train_labels", device), num_classes, n)
    k_eff = min(k, n - 1 if exclude_self else n)
    if k_eff < 1:
        raise EvaluationError("exclude_self with a single training embedding leaves no neighbour")
    dtype = torch.promote_types(bank.dtype, query.dtype)
    bank = F.normalize(bank.to(dtype), dim=1)
    targets = targets.to(dtype)
    out = []
    for start in range(0, query.shape[0], chunk_size):
        q = F.normalize(query[start:start + chunk_size].to(dtype), dim=1)
        sim = q @ bank.T  # (m, N) cosine similarities
        if exclude_self:
            rows = torch.arange(q.shape[0], device=device)
            sim[rows, rows + start] = float("-inf")
        top_sim, top_idx = sim.topk(k_eff, dim=1)
        # subtracting the row max leaves the normalised weights unchanged, avoids overflow
        w = torch.exp((top_sim - top_sim[:, :1]) / temperature)
        scores = torch.einsum("mk,mkc->mc", w, targets[top_idx]) / w.sum(dim=1, keepdim=True)
        out.append(scores)
    # float rounding can push a share a hair past 1; keep them valid probabilities
    return torch.cat(out).float().clamp_(0.0, 1.0)


def knn_evaluate(
    train_emb: Any,
    train_labels: Any,
    query_emb: Any,
    query_labels: Any,
    task: str = "multiclass",
    k: int = 20,
    temperature: float = 0.07,
    num_classes: Optional[int] = None,
    chunk_size: int = 1024,
    class_names: Optional[Sequence[str]] = None,
    ci: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> Dict[str, Any]:
    """kNN scores on the queries, scored by :func:`medssl.eval.metrics.evaluate_predictions`.

    Returns that dict plus ``top1`` (= ``accuracy``) and ``protocol`` (method, k,
    temperature, similarity, train size). ``num_classes`` defaults to 2 for binary, else
    the largest label in train or query plus one (single-label).
    """
    task = normalise_task(task)
    if num_classes is None and task != "multilabel":
        labels = [np.asarray(_as_tensor(x, "labels").cpu()) for x in (train_labels, query_labels)]
        num_classes = 2 if task == "binary" else int(max(int(np.max(l)) for l in labels)) + 1
    scores = knn_predict(train_emb, train_labels, query_emb, k, temperature, num_classes, chunk_size)
    y = np.asarray(_as_tensor(query_labels, "query_labels").cpu())
    res = evaluate_predictions(y, scores.cpu().numpy().astype(np.float64), task, class_names,
                               ci=ci, n_boot=n_boot, seed=seed)
    n_train = int(np.shape(train_emb)[0])
    res["top1"] = res["accuracy"]
    res["protocol"] = {
        "method": "weighted kNN",
        "similarity": "cosine",
        "k": int(min(k, n_train)),
        "temperature": float(temperature),
        "weights": "exp(sim / temperature), normalised over the k neighbours",
        "n_train": n_train,
    }
    return res
