"""NNCLR (baseline): the nearest support-set neighbour of one view is the positive of
the other view's prediction; only in-batch negatives."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Tuple

import torch
from torch import Tensor

from medssl.objectives.base import Diagnostics, Objective, ViewOutputs, embedding_std
from medssl.objectives.common import (
    SelectorSpec,
    SeededGenerators,
    check_positive,
    look_up,
    neighbour_stats,
    require_support,
    require_views,
    resolve_selector,
    tile,
)
from medssl.objectives.functional import ce_rows, mean_over_neighbours
from medssl.registry import OBJECTIVES


def _nn_term(nn: Tensor, p: Tensor, tau: float) -> Tensor:
    return ce_rows(nn @ p.t() / tau)


def nnclr_terms(p1: Tensor, p2: Tensor, nn1: Tensor, nn2: Tensor, tau: float = 0.1) -> Tuple[Tensor, Tensor]:
    """The two directions ``CE_rows(NN(z1) p2ᵀ/τ)`` and ``CE_rows(NN(z2) p1ᵀ/τ)``.

    Args:
        p1, p2: online predictions ``[B, D]`` (unit rows, carry gradient).
        nn1, nn2: neighbours of ``z1`` / ``z2``, ``[B, D]`` or ``[B, K, D]`` (then the term
            is averaged over the ``K`` slots); stop-gradient is applied here.
    """
    t12 = mean_over_neighbours(lambda n, p: _nn_term(n, p, tau), nn1.detach(), p2)
    t21 = mean_over_neighbours(lambda n, p: _nn_term(n, p, tau), nn2.detach(), p1)
    return t12, t21


def nnclr_loss(p1: Tensor, p2: Tensor, nn1: Tensor, nn2: Tensor, tau: float = 0.1) -> Tensor:
    """``L = 1/2 [CE_rows(NN(z1) p2ᵀ/τ) + CE_rows(NN(z2) p1ᵀ/τ)]`` (see :func:`nnclr_terms`)."""
    t12, t21 = nnclr_terms(p1, p2, nn1, nn2, tau)
    return 0.5 * (t12 + t21)


class NNCLR(Objective):
    """NNCLR with a predictor, no target network; the support set stores detached ``z1``.

    Args:
        tau: temperature (> 0), default 0.1.
        neighbours: selector name or mapping (default ``"nn"``; ``topk`` averages the
            loss over its ``k`` neighbours). The neighbour is always stop-gradient.
        seed: seeds the selector's noise (only a ``pnn`` selector draws any).

    Cold start: while the support set holds fewer rows than the selector's ``k``, each
    query's neighbour is the query itself (detached).
    """

    name: ClassVar[str] = "nnclr"
    uses_predictor: ClassVar[bool] = True
    uses_target: ClassVar[bool] = False
    uses_support_set: ClassVar[bool] = True

    def __init__(self, tau: float = 0.1, neighbours: SelectorSpec = None, seed: Optional[int] = None) -> None:
        super().__init__()
        self.tau = check_positive(self.name, "tau", tau)
        self.selector = resolve_selector(self.name, neighbours, "nn", {"topk": {"k": 1}, "pnn": {"k": 1}})
        self.generators = SeededGenerators(seed)

    def forward(
        self, outputs: ViewOutputs, support: Optional[Any] = None, *, generator: Optional[torch.Generator] = None
    ) -> Tuple[Tensor, Diagnostics]:
        support = require_support(self.name, support)
        z1, z2 = require_views(self.name, "z", outputs.z)[:2]
        p1, p2 = require_views(self.name, "p", outputs.p)[:2]
        b = z1.shape[0]
        query = torch.cat([z1, z2]).detach()
        # Look-ups strictly before this step's enqueue: a step never finds its own rows.
        found = look_up(self.selector, query, support, training=self.training,
                        generator=self.generators.get(query.device, generator))
        nn_all = query if found is None else found.embeddings
        t12, t21 = nnclr_terms(p1, p2, nn_all[:b], nn_all[b:], self.tau)
        loss = 0.5 * (t12 + t21)
        diag: Diagnostics = {
            "loss": float(loss.detach()),
            "loss_12": float(t12.detach()),
            "loss_21": float(t21.detach()),
            "emb_std": embedding_std(z1),
            "cold_start": float(found is None),
        }
        if found is not None:
            diag.update(neighbour_stats(found.rows, support, tile(outputs.labels, 2), tile(outputs.indices, 2)))
        support.enqueue(z1.detach(), indices=outputs.indices, labels=outputs.labels)
        return loss, diag


OBJECTIVES.register("nnclr")(NNCLR)
