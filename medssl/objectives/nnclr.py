"""NNCLR (baseline): the nearest support-set neighbour of one view is the positive of
the other view's prediction; only in-batch negatives."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Optional, Tuple

import torch
from torch import Tensor

from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Requirements, embedding_std
from medssl.objectives.common import SelectorSpec, check_choice, check_positive
from medssl.objectives.neighbours import Neighbours
from medssl.objectives.support_objective import SupportSetObjective, Terms, Views
from medssl.objectives.support_set import SupportSet
from medssl.objectives.functional import ce_rows, mean_over_neighbours
from medssl.registry import OBJECTIVES

QUEUE_SOURCES = ("online", "target")


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


class NNCLR(SupportSetObjective):
    """NNCLR with a predictor, no target network (unless ``queue_source: target``); the
    support set stores detached ``z1``.

    Args:
        tau: temperature (> 0), default 0.1.
        neighbours: selector name or mapping (default ``"nn"``; ``topk`` averages the
            loss over its ``k`` neighbours). The neighbour is always stop-gradient.
        queue_source: ``"online"`` (enqueue the detached ``z1``, the paper; default) or
            ``"target"`` (enqueue an EMA target network's projection ``t1``, which the model
            then builds: a queue that drifts less between steps).
        min_fill: support-set warm-up, the filled fraction of the queue before neighbours
            are used (default 0: as soon as it holds ``k`` rows; see :class:`SupportSetObjective`).
        instance_weight, instance_tau: an added SimCLR term on the online projections,
            ``w · NT-Xent(z1, z2)`` (default 0: off; see :class:`SupportSetObjective`).
        instance_schedule, instance_fade_steps, neighbour_warmup_steps: the instance term's
            weight over training and a SimCLR-only warm-up (default constant, 0, 0; see
            :mod:`medssl.objectives.instance_schedule`).
        seed: seeds the selector's noise (only a ``pnn`` selector draws any).

    Cold start: while the support set holds fewer rows than the selector's ``k``, each
    query's neighbour is the query itself (detached).
    """

    name: ClassVar[str] = "nnclr"
    requirements = Requirements(predictor=True, support_set=True)

    def __init__(self, tau: float = 0.1, neighbours: SelectorSpec = None, queue_source: str = "online",
                 min_fill: float = 0.0, instance_weight: float = 0.0, instance_tau: float = 0.1,
                 instance_schedule: str = "constant", instance_fade_steps: int = 0,
                 neighbour_warmup_steps: int = 0,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed, min_fill, instance_weight, instance_tau, instance_schedule, instance_fade_steps,
                         neighbour_warmup_steps)
        self.tau = check_positive(self.name, "tau", tau)
        self.queue_source = check_choice(self.name, "queue_source", queue_source, QUEUE_SOURCES)
        self.choose_selector(neighbours, "nn", {"topk": {"k": 1}, "pnn": {"k": 1}})
        if self.queue_source == "target":  # the model then builds an EMA target network
            self.requirements = replace(self.requirements, target=True)

    def views(self, outputs: ViewOutputs) -> Views:
        z1, z2 = self.two(outputs, "z")
        p1, p2 = self.two(outputs, "p")
        v = {"z1": z1, "z2": z2, "p1": p1, "p2": p2}
        if self.queue_source == "target":
            v["t1"] = self.two(outputs, "t")[0].detach()
        return v

    def query(self, v: Views) -> Tensor:
        return torch.cat([v["z1"], v["z2"]]).detach()

    def terms(self, v: Views, found: Optional[Neighbours], query: Tensor, support: SupportSet,
              generator: Optional[torch.Generator]) -> Terms:
        b = v["z1"].shape[0]
        nn_all = query if found is None else found.embeddings
        t12, t21 = nnclr_terms(v["p1"], v["p2"], nn_all[:b], nn_all[b:], self.tau)
        loss = 0.5 * (t12 + t21)
        return Terms(loss, {"loss_12": float(t12.detach()), "loss_21": float(t21.detach()),
                            "emb_std": embedding_std(v["z1"])})

    def stored(self, v: Views) -> Tensor:
        return v["t1"] if self.queue_source == "target" else v["z1"].detach()


OBJECTIVES.register("nnclr")(NNCLR)
