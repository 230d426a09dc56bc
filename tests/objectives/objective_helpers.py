"""Small builders shared by the objective tests (tiny tensors, float64 references)."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.models.outputs import ViewOutputs
from medssl.objectives.support_set import SupportSet


def unit(b: int, d: int, seed: int, dtype: torch.dtype = torch.float64, grad: bool = False) -> Tensor:
    """``[b, d]`` random unit rows; a leaf (``requires_grad`` when ``grad``)."""
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    return x.requires_grad_(grad)


def views(b: int, d: int, seed: int, grad: bool = True) -> List[Tensor]:
    """Two leaf views of unit rows."""
    return [unit(b, d, seed, grad=grad), unit(b, d, seed + 1, grad=grad)]


def outputs(b: int = 6, d: int = 8, seed: int = 0, labels: bool = True, t_grad: bool = False) -> ViewOutputs:
    """Model outputs with z, p (gradient leaves) and t (leaves; ``t_grad`` lets a test check
    that no gradient reaches them)."""
    return ViewOutputs(
        z=views(b, d, seed), p=views(b, d, seed + 10), t=views(b, d, seed + 20, grad=t_grad),
        indices=torch.arange(b) + 100,
        labels=(torch.arange(b) % 2) if labels else None,
    )


def filled_support(m: int, d: int, seed: int = 99, size: Optional[int] = None, labels: bool = True) -> SupportSet:
    """A SupportSet of capacity ``size`` (default ``m``) holding ``m`` random unit rows
    (dataset indices ``0..m-1``, labels alternating 0/1)."""
    s = SupportSet(size or m, d)
    s.enqueue(unit(m, d, seed, dtype=torch.float32), indices=torch.arange(m),
              labels=(torch.arange(m) % 2) if labels else None)
    return s


def stored(s: SupportSet) -> Tensor:
    """The written rows of ``s`` as float64."""
    return s.embeddings[: len(s)].double()


def ce_row_ref(scores: Sequence[float], pos: int) -> float:
    """``-log softmax(scores)[pos]`` with explicit Python sums."""
    mx = max(scores)
    lse = mx + math.log(sum(math.exp(s - mx) for s in scores))
    return lse - scores[pos]


def ce_rows_ref(a: Tensor, b: Tensor, tau: float) -> float:
    """``CE_rows(a bᵀ / τ)`` by loops over rows and columns."""
    a, b = a.detach().double(), b.detach().double()
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        scores = [float(a[i] @ b[j]) / tau for j in range(b.shape[0])]
        total += ce_row_ref(scores, i)
    return total / n


def nt_xent_ref(z1: Tensor, z2: Tensor, tau: float) -> float:
    """SimCLR's NT-Xent of two views ``[B, D]`` by loops: each of the ``2B`` rows against
    the other ``2B - 1``, its other view the positive."""
    rows = list(z1.detach().double()) + list(z2.detach().double())
    b = z1.shape[0]
    total = 0.0
    for i in range(2 * b):
        others = [j for j in range(2 * b) if j != i]
        total += ce_row_ref([float(rows[i] @ rows[j]) / tau for j in others], others.index((i + b) % (2 * b)))
    return total / (2 * b)
