"""Pure tensor helpers shared by the objectives (no parameters, no support set).

Every function takes L2-normalised rows and returns a scalar loss or a small tensor; they
are the building blocks the per-objective loss functions are written in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ce_rows(logits: Tensor) -> Tensor:
    """``CE_rows(S)``: mean over rows ``i`` of ``-log softmax(S_i)[i]``.

    Args:
        logits: ``[B, B]`` (or ``[B, N]`` with ``N >= B``) scores; the diagonal entry
            ``S[i, i]`` is the positive of row ``i``.
    """
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target)


def nt_xent(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """SimCLR's NT-Xent over the ``2B`` rows of ``[z1; z2]`` (each ``[B, D]``, unit rows).

    Row ``i`` of view 1 has the positive ``i`` of view 2 (and vice versa); the other
    ``2B - 2`` rows are its negatives, its own similarity is excluded.
    """
    b = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    logits = z @ z.t() / tau
    self_mask = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    idx = torch.arange(b, device=z.device)
    target = torch.cat([idx + b, idx])
    return F.cross_entropy(logits, target)


def soft_ce(logits: Tensor, weights: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-row ``-sum_j weights[i, j] * log softmax(logits_i)[j]`` (``[B]``).

    ``valid`` (bool, same shape) masks candidates out of the softmax; masked entries of
    ``weights`` must be zero.
    """
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    logp = torch.log_softmax(logits, dim=1)
    # 0 * -inf would be nan for masked entries: zero them explicitly.
    logp = torch.where(weights != 0, logp, torch.zeros_like(logp))
    return -(weights * logp).sum(dim=1)


def mean_over_neighbours(loss_fn, neighbours: Tensor, *args: Tensor) -> Tensor:
    """Average ``loss_fn(neighbours[:, k], *args)`` over the ``K`` neighbour slots.

    ``neighbours`` is ``[B, D]`` (one neighbour per row) or ``[B, K, D]``; a single slot
    gives exactly ``loss_fn(neighbours, *args)``.
    """
    if neighbours.dim() == 2:
        return loss_fn(neighbours, *args)
    losses = [loss_fn(neighbours[:, k], *args) for k in range(neighbours.shape[1])]
    return torch.stack(losses).mean()


def entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy (nats) of probability vectors along ``dim``."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=dim)
