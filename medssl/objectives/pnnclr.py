"""pNNCLR: NNCLR with pseudo nearest neighbours, noise and a smooth (EMA) target network.

The loss is the 4-term symmetrised ``C(p, t)`` of METHODS.md; the pseudo neighbours come
from the shared ``pnn`` selector (:mod:`medssl.objectives.neighbours`), so
``alpha = beta = 0`` reduces it to plain nearest neighbours (the "swu alone" ablation).
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from torch import Tensor

from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Requirements, embedding_std
from medssl.objectives.common import (
    SelectorSpec,
    check_bool,
    check_choice,
    check_positive,
    check_between,
)
from medssl.objectives.neighbours import Neighbours
from medssl.objectives.support_objective import SupportSetObjective, Terms, Views
from medssl.objectives.support_set import SupportSet
from medssl.objectives.functional import ce_rows
from medssl.registry import OBJECTIVES

QUEUE_SOURCES = ("target", "online")


def pnnclr_c(p: Tensor, t: Tensor, pnn_p: Tensor, pnn_t: Tensor, tau: float = 0.1) -> Tensor:
    """``C(p, t) = 1/4 [CE(pNN(p) tᵀ/τ) + CE(t pNN(p)ᵀ/τ) + CE(pNN(t) pᵀ/τ) + CE(p pNN(t)ᵀ/τ)]``.

    Args:
        p: online predictions of one view ``[B, D]``.
        t: target projections of the *other* view ``[B, D]``.
        pnn_p, pnn_t: pseudo neighbours of ``p`` and ``t``, ``[B, D]`` or ``[B, K, D]``
            (then ``C`` is averaged over the ``K`` slots). They are used as given: the
            caller decides whether they carry gradient (``pnn_grad``).
    """
    if pnn_p.dim() == 3:
        return torch.stack([pnnclr_c(p, t, pnn_p[:, k], pnn_t[:, k], tau) for k in range(pnn_p.shape[1])]).mean()
    return 0.25 * (
        ce_rows(pnn_p @ t.t() / tau)
        + ce_rows(t @ pnn_p.t() / tau)
        + ce_rows(pnn_t @ p.t() / tau)
        + ce_rows(p @ pnn_t.t() / tau)
    )


def pnnclr_loss(
    p1: Tensor, p2: Tensor, t1: Tensor, t2: Tensor,
    pnn_p1: Tensor, pnn_p2: Tensor, pnn_t1: Tensor, pnn_t2: Tensor, tau: float = 0.1,
) -> Tensor:
    """``L = 1/2 [C(p1, t2) + C(p2, t1)]`` (see :func:`pnnclr_c`; all inputs unit rows)."""
    return 0.5 * (pnnclr_c(p1, t2, pnn_p1, pnn_t2, tau) + pnnclr_c(p2, t1, pnn_p2, pnn_t1, tau))


class PNNCLR(SupportSetObjective):
    """pNNCLR objective module.

    Args:
        tau: temperature (> 0), default 0.1.
        alpha: interpolation ``u'' = u + (1-α)(NN(u) - u)``, in [0, 1], default 0.25.
        beta: noise scale ``σ = β ||u - u''||``, >= 0, default 0.10 (noise only in training).
        renormalize: L2-normalise the pseudo neighbour (default False).
        pnn_grad: let gradient reach ``p`` through the ``α·p`` part of ``pNN(p)`` (default
            True, the reference code); False detaches ``pNN(p)``.
        queue_source: ``"target"`` (enqueue ``t1``, default) or ``"online"`` (enqueue the
            detached online prediction ``p1``, as the reference code does).
        neighbours: selector override (default ``"pnn"`` built from the options above).
        min_fill: support-set warm-up, the filled fraction of the queue before neighbours
            are used (default 0: as soon as it holds ``k`` rows; see :class:`SupportSetObjective`).
        instance_weight, instance_tau: an added SimCLR term on the online projections,
            ``w · NT-Xent(z1, z2)`` (default 0: off; see :class:`SupportSetObjective`).
        instance_schedule, instance_fade_steps, neighbour_warmup_steps: the instance term's
            weight over training and a SimCLR-only warm-up (default constant, 0, 0; see
            :mod:`medssl.objectives.instance_schedule`).
        seed: seeds the pseudo-neighbour noise.

    The target network's EMA momentum is the model's (``model.ema_base``).

    Cold start: while the support set holds fewer rows than the selector's ``k``, every
    query ``u`` is its own (detached) neighbour, i.e. ``pNN(u) = sg(u)``.
    """

    name: ClassVar[str] = "pnnclr"
    requirements = Requirements(predictor=True, target=True, support_set=True)

    def __init__(
        self,
        tau: float = 0.1,
        alpha: float = 0.25,
        beta: float = 0.10,
        renormalize: bool = False,
        pnn_grad: bool = True,
        queue_source: str = "target",
        neighbours: SelectorSpec = None,
        min_fill: float = 0.0,
        instance_weight: float = 0.0,
        instance_tau: float = 0.1,
        instance_schedule: str = "constant", instance_fade_steps: int = 0,
        neighbour_warmup_steps: int = 0,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(seed, min_fill, instance_weight, instance_tau, instance_schedule, instance_fade_steps,
                         neighbour_warmup_steps)
        self.tau = check_positive(self.name, "tau", tau)
        self.alpha = check_between(self.name, "alpha", alpha, 0.0, 1.0)
        self.beta = check_between(self.name, "beta", beta, 0.0, None)
        self.renormalize = check_bool(self.name, "renormalize", renormalize)
        self.pnn_grad = check_bool(self.name, "pnn_grad", pnn_grad)
        self.queue_source = check_choice(self.name, "queue_source", queue_source, QUEUE_SOURCES)
        pnn = {"k": 1, "alpha": self.alpha, "beta": self.beta, "renormalize": self.renormalize,
               "pnn_grad": self.pnn_grad}
        self.choose_selector(neighbours, "pnn", {"pnn": pnn, "topk": {"k": 1}})

    def views(self, outputs: ViewOutputs) -> Views:
        return self.predictions_and_targets(outputs)

    def query(self, v: Views) -> Tensor:
        # One look-up for all four queries (one matrix product).
        return torch.cat([v["p1"], v["p2"], v["t1"], v["t2"]])

    def terms(self, v: Views, found: Optional[Neighbours], query: Tensor, support: SupportSet,
              generator: Optional[torch.Generator]) -> Terms:
        b = v["p1"].shape[0]
        pnn = query.detach() if found is None else found.embeddings
        pnn_p1, pnn_p2, pnn_t1, pnn_t2 = pnn[:b], pnn[b:2 * b], pnn[2 * b:3 * b], pnn[3 * b:]
        c12 = pnnclr_c(v["p1"], v["t2"], pnn_p1, pnn_t2, self.tau)
        c21 = pnnclr_c(v["p2"], v["t1"], pnn_p2, pnn_t1, self.tau)
        loss = 0.5 * (c12 + c21)
        return Terms(loss, {"loss_c12": float(c12.detach()), "loss_c21": float(c21.detach()),
                            "emb_std": embedding_std(v["p1"])})

    def stored(self, v: Views) -> Tensor:
        return v["t1"] if self.queue_source == "target" else v["p1"].detach()


OBJECTIVES.register("pnnclr")(PNNCLR)
