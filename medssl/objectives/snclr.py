"""SNCLR: soft neighbours. Each anchor has its augmented view plus K support-set
neighbours as positives, weighted by a learned cross-attention "positiveness"
(:mod:`medssl.objectives.snclr_attention`).

The attention projections ``f1, f2`` are parameters of this module: the optimiser must
receive ``objective.parameters()`` as well as the model's.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from medssl.errors import ConfigError
from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Diagnostics, Requirements, embedding_std
from medssl.objectives.common import SelectorSpec, check_bool, check_choice, check_int, check_positive
from medssl.objectives.neighbours import Neighbours
from medssl.objectives.support_objective import SupportSetObjective, Terms, Views
from medssl.objectives.support_set import SupportSet
from medssl.objectives.functional import entropy, soft_ce
from medssl.objectives.snclr_attention import ATTENTIONS, positiveness
from medssl.objectives.snclr_attention import attention_probs, rescale_weights  # noqa: F401  (re-exported)
from medssl.registry import OBJECTIVES

LOSS_FORMS = ("weighted_positive", "soft_target")


def _candidates(t: Tensor, neighbours: Tensor, w: Tensor) -> Tuple[Tensor, Tensor]:
    """Candidate set ``A`` (``[B(K+1), D]``: all ``t`` then every anchor's ``K`` neighbours)
    and the positive-weight matrix ``W [B, B(K+1)]`` (``W[b, b] = 1``, ``W[b, B+bK+i] = w_bi``)."""
    b, k = neighbours.shape[0], neighbours.shape[1]
    cand = torch.cat([t, neighbours.reshape(b * k, neighbours.shape[2])])
    weights = torch.zeros(b, b * (k + 1), dtype=w.dtype, device=w.device)
    weights[:, :b] = torch.eye(b, dtype=w.dtype, device=w.device)
    if k:
        block = torch.zeros(b, b, k, dtype=w.dtype, device=w.device)
        block[torch.arange(b), torch.arange(b)] = w
        weights[:, b:] = block.reshape(b, b * k)
    return cand, weights


def snclr_view_loss(
    p: Tensor, t: Tensor, neighbours: Tensor, w: Tensor, tau: float = 0.2, loss_form: str = "weighted_positive"
) -> Tensor:
    """``mean_b L_b`` for anchors ``p`` ``[B, D]`` with positives ``{t_b} ∪ N_b``.

    Args:
        p: online predictions (anchors) ``[B, D]``.
        t: target projections of the other view ``[B, D]`` (the weight-1 positives).
        neighbours: ``N [B, K, D]`` (``K`` may be 0: in-batch positives only).
        w: positiveness weights ``[B, K]``.
        loss_form: ``"weighted_positive"``:
            ``L_b = -log[Σ_{a∈A_b} w_a e^{p_b·a/τ} / Σ_{a∈A} e^{p_b·a/τ}]``;
            ``"soft_target"``: ``L_b = -Σ_{a∈A_b} w_a log P_b(a)``.
    """
    cand, weights = _candidates(t, neighbours, w)
    logits = p @ cand.t() / tau
    if loss_form == "soft_target":
        return soft_ce(logits, weights).mean()
    log_w = torch.where(weights > 0, weights.clamp_min(1e-30).log(), torch.full_like(weights, float("-inf")))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(logits + log_w, dim=1)).mean()


class SNCLR(SupportSetObjective):
    """SNCLR objective module (queue of target projections; enqueues ``t2``).

    Args:
        tau: temperature (> 0), default 0.2.
        k: number of candidate neighbours ``K`` per anchor, default 30.
        dim: embedding width ``D`` (the projector's output), default 256.
        attn_dim: attention width ``d`` of ``f1, f2: D -> d``, default 256.
        attention: ``"linear"`` (learnable ``f1, f2``, scale ``1/sqrt(d)``; the paper) or
            ``"cosine"`` (parameter-free: cosine of the unit rows, no scale; reference code).
        gamma: ``"max"`` (largest ``w_bi`` becomes 1, default) or a float > 0 divisor.
        loss_form: ``"weighted_positive"`` (default, the paper) or ``"soft_target"``.
        detach_weights: stop the gradient through ``w`` (default False).
        neighbours: selector override (default ``"topk"`` with ``k``; e.g. ``"pnn"`` gives
            ``k`` pseudo neighbours).
        min_fill: support-set warm-up, the filled fraction of the queue before neighbours
            are used (default 0: as soon as it holds ``k`` rows; see :class:`SupportSetObjective`).
        instance_weight, instance_tau: an added SimCLR term on the online projections,
            ``w · NT-Xent(z1, z2)`` (default 0: off; see :class:`SupportSetObjective`).
        instance_schedule, instance_fade_steps, neighbour_warmup_steps: the instance term's
            weight over training and a SimCLR-only warm-up (default constant, 0, 0; see
            :mod:`medssl.objectives.instance_schedule`).
        seed: seeds a ``pnn`` selector's noise.

    Cold start: while the support set holds fewer than ``k`` rows the anchor's only
    positive is ``t_b`` (in-batch InfoNCE over the other view's target projections).
    """

    name: ClassVar[str] = "snclr"
    requirements = Requirements(predictor=True, target=True, support_set=True, embedding_width_option="dim")

    def __init__(self, tau: float = 0.2, k: int = 30, dim: int = 256, attn_dim: int = 256, attention: str = "linear",
                 gamma: Union[str, float] = "max", loss_form: str = "weighted_positive",
                 detach_weights: bool = False, neighbours: SelectorSpec = None, min_fill: float = 0.0,
                 instance_weight: float = 0.0, instance_tau: float = 0.1,
                 instance_schedule: str = "constant", instance_fade_steps: int = 0,
                 neighbour_warmup_steps: int = 0,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed, min_fill, instance_weight, instance_tau, instance_schedule, instance_fade_steps,
                         neighbour_warmup_steps)
        self.tau = check_positive(self.name, "tau", tau)
        self.k = check_int(self.name, "k", k, 1)
        self.dim = check_int(self.name, "dim", dim, 1)
        self.attn_dim = check_int(self.name, "attn_dim", attn_dim, 1)
        self.attention = check_choice(self.name, "attention", attention, ATTENTIONS)
        if isinstance(gamma, str) and gamma != "max":
            raise ConfigError(f"objective 'snclr': gamma must be 'max' or a number > 0, got {gamma!r}")
        self.gamma: Union[str, float] = gamma if gamma == "max" else check_positive(self.name, "gamma", gamma)
        self.loss_form = check_choice(self.name, "loss_form", loss_form, LOSS_FORMS)
        self.detach_weights = check_bool(self.name, "detach_weights", detach_weights)
        if self.attention == "linear":
            # No bias: a key bias only shifts all K logits of an anchor equally (softmax ignores it).
            self.f1: Optional[nn.Linear] = nn.Linear(self.dim, self.attn_dim, bias=False)
            self.f2: Optional[nn.Linear] = nn.Linear(self.dim, self.attn_dim, bias=False)
        else:
            self.f1 = self.f2 = None
        self.choose_selector(neighbours, "topk", {"topk": {"k": self.k}, "pnn": {"k": self.k}})

    def attention_weights(self, y: Tensor, neighbours: Tensor) -> Tuple[Tensor, Tensor]:
        """``(probs, w)`` for anchors' online projections ``y [B, D]`` and ``N [B, K, D]``."""
        probs, w = positiveness(y, neighbours, self.f1, self.f2, gamma=self.gamma)
        return probs, (w.detach() if self.detach_weights else w)

    def views(self, outputs: ViewOutputs) -> Views:
        y1, y2 = self.two(outputs, "z")  # online projections: the attention's queries
        return {"y1": y1, "y2": y2, **self.predictions_and_targets(outputs)}

    def query(self, v: Views) -> Tensor:
        return torch.cat([v["t2"], v["t1"]])

    def terms(self, v: Views, found: Optional[Neighbours], query: Tensor, support: SupportSet,
              generator: Optional[torch.Generator]) -> Terms:
        b = v["p1"].shape[0]
        # Cold start: no neighbours (K = 0), the anchor's only positive is t_b.
        nbrs = query.new_zeros(2 * b, 0, query.shape[1]) if found is None else found.embeddings.detach()
        n2, n1 = nbrs[:b], nbrs[b:]
        probs2, w2 = self.attention_weights(v["y1"], n2)  # anchor p1: neighbours of t2
        probs1, w1 = self.attention_weights(v["y2"], n1)  # anchor p2: neighbours of t1
        l1 = snclr_view_loss(v["p1"], v["t2"], n2, w2, self.tau, self.loss_form)
        l2 = snclr_view_loss(v["p2"], v["t1"], n1, w1, self.tau, self.loss_form)
        diag: Diagnostics = {"loss_12": float(l1.detach()), "loss_21": float(l2.detach()),
                             "emb_std": embedding_std(v["y1"])}
        if found is None:
            return Terms(l1 + l2, diag)
        probs = torch.cat([probs2, probs1]).detach()
        w = torch.cat([w2, w1]).detach()
        diag["weight_entropy"] = float(entropy(probs).mean())
        diag["weight_mean"] = float(w.mean())
        return Terms(l1 + l2, diag, weights=w)

    def stored(self, v: Views) -> Tensor:
        return v["t2"]


OBJECTIVES.register("snclr")(SNCLR)
