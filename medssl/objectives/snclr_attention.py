"""SNCLR's positiveness: how much each support-set neighbour counts as a positive.

A cross-attention between an anchor's online projection and its ``K`` candidate
neighbours gives probabilities over the neighbours, rescaled so the most positive one
weighs 1 (or by a fixed divisor). The loss that uses the weights is
:func:`medssl.objectives.snclr.snclr_view_loss`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.errors import ConfigError

ATTENTIONS = ("linear", "cosine")


def attention_probs(query: Tensor, keys: Tensor, scale: float = 1.0) -> Tensor:
    """``softmax_i(query_b · keys_bi * scale)``: ``query [B, d]``, ``keys [B, K, d]`` -> ``[B, K]``."""
    return torch.softmax(torch.einsum("bd,bkd->bk", query, keys) * scale, dim=1)


def rescale_weights(probs: Tensor, gamma: Union[str, float] = "max") -> Tensor:
    """``w_bi = probs_bi / γ_b``: ``γ_b = max_i probs_bi`` (``"max"``) or a fixed float."""
    if probs.shape[1] == 0:
        return probs
    if gamma == "max":
        return probs / probs.max(dim=1, keepdim=True).values
    return probs / float(gamma)


def positiveness(
    y: Tensor, neighbours: Tensor, f1: Optional[nn.Linear], f2: Optional[nn.Linear], *,
    gamma: Union[str, float] = "max",
) -> Tuple[Tensor, Tensor]:
    """``(probs, w)``, both ``[B, K]``, for online projections ``y [B, D]`` and ``N [B, K, D]``.

    With projections ``f1, f2: D -> d`` (the paper's linear attention) the logits are
    ``f1(y_b)·f2(n_bi)/sqrt(d)``; without them (``None``: the reference code's cosine
    attention) the cosine of the unit rows, unscaled. ``w`` is ``probs`` rescaled by
    :func:`rescale_weights`.
    """
    if f1 is None or f2 is None:
        probs = attention_probs(F.normalize(y, dim=1), F.normalize(neighbours, dim=2))
    else:
        if y.shape[1] != f1.in_features:
            raise ConfigError(
                f"objective 'snclr': dim={f1.in_features} but the projections have width {y.shape[1]}; "
                "set the objective's dim to the model's proj_dim"
            )
        probs = attention_probs(f1(y), f2(neighbours), 1.0 / math.sqrt(f1.out_features))
    return probs, rescale_weights(probs, gamma)
