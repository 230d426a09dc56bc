"""PSM (Potential Sample Mining), a reconstruction of its described mechanisms.

Each mechanism is its own function so the published equations can replace it:
:func:`soft_positive_weights` (PPSM), :func:`band_probability` /
:func:`sample_negatives_gaussian` / :func:`sample_negatives_band` (PNSM) and
:func:`psm_view_loss` (the loss of one view given what was mined).
"""

from __future__ import annotations

from typing import ClassVar, Optional, Tuple

import torch
from torch import Tensor

from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Diagnostics, Requirements, embedding_std
from medssl.objectives.common import (
    SelectorSpec,
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_between,
)
from medssl.objectives.neighbours import Neighbours
from medssl.objectives.support_objective import SupportSetObjective, Terms, Views
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES

SAMPLERS = ("gaussian", "band")


# ----------------------------------------------------------------------------- PPSM
def soft_positive_weights(t: Tensor, mined: Tensor, tau_w: float = 0.1) -> Tensor:
    """``ω_bj = softmax_j(t_b · m_bj / τ_w)``: ``t [B, D]``, ``mined [B, k, D]`` -> ``[B, k]``."""
    return torch.softmax(torch.einsum("bd,bkd->bk", t, mined) / tau_w, dim=1)


# ----------------------------------------------------------------------------- PNSM
def band_probability(s_neg: Tensor, s_pos: Tensor, a: float = 0.1, delta: float = 0.1) -> Tensor:
    """``π_n = exp(-(s_n - (s+ - δ))² / (2a²))``: ``s_neg [B, M]``, ``s_pos [B]`` -> ``[B, M]``."""
    return torch.exp(-((s_neg - (s_pos[:, None] - delta)) ** 2) / (2 * a * a))


def _uniform(like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """U(0, 1) draws shaped like ``like``, made on the generator's device (a CPU generator
    may drive CUDA data) and moved to ``like``'s."""
    device = generator.device if generator is not None else like.device
    return torch.rand(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def sample_negatives_gaussian(
    s_neg: Tensor, s_pos: Tensor, eligible: Tensor, *, a: float = 0.1, delta: float = 0.1,
    n_neg: int = 4096, generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """Keep each eligible queue negative with probability ``π_n`` (:func:`band_probability`);
    if more than ``n_neg`` survive, keep a uniformly random ``n_neg`` of them (without
    replacement).

    Args:
        s_neg: anchor-negative similarities ``[B, M]`` (detached here).
        s_pos: anchor-positive similarity ``s+`` per anchor ``[B]``.
        eligible: bool ``[B, M]``: written queue rows that are not this anchor's mined positives.

    Returns:
        ``idx [B, N]`` queue rows and ``valid [B, N]`` (bool) with ``N = min(n_neg, M)``.
    """
    pi = band_probability(s_neg.detach(), s_pos.detach(), a, delta)
    kept = eligible & (_uniform(pi, generator) < pi)
    # Random priorities among the kept; unkept rows get -1 so they sort last.
    prio = _uniform(pi, generator)
    prio = torch.where(kept, prio, torch.full_like(prio, -1.0))
    top, idx = torch.topk(prio, min(n_neg, prio.shape[1]), dim=1)
    return idx, top >= 0


def sample_negatives_band(s_neg: Tensor, eligible: Tensor, *, drop: int = 32, keep: int = 4096) -> Tuple[Tensor, Tensor]:
    """Deterministic rank band: per anchor, rank eligible negatives by similarity, drop the
    top ``drop`` (``r0``), keep the next ``keep`` (``R``). Same returns as the gaussian sampler."""
    m = s_neg.shape[1]
    ranked = s_neg.detach().masked_fill(~eligible, float("-inf"))
    n_take = min(drop + keep, m)
    top, idx = torch.topk(ranked, n_take, dim=1)
    idx, top = idx[:, drop:], top[:, drop:]
    return idx, torch.isfinite(top)


# ----------------------------------------------------------------------------- loss
def psm_view_loss(
    p: Tensor, t: Tensor, mined: Tensor, omega: Tensor, queue: Tensor, neg_idx: Tensor, neg_valid: Tensor,
    *, tau: float = 0.2, w_hard: float = 1.0, w_soft: float = 0.5, batch_negatives: bool = True,
) -> Tuple[Tensor, Tensor, Tensor]:
    """PSM loss of anchors ``p`` against one view's positives and kept negatives.

    ``P_b`` is the softmax of ``p_b·a/τ`` over: the hard positive ``t_b``; the soft
    positives ``mined[b]``; the other rows of ``t`` (in-batch negatives, when
    ``batch_negatives``); the kept queue negatives ``queue[neg_idx[b]]`` (where ``neg_valid``).

    Args:
        p: ``[B, D]`` online predictions; t: ``[B, D]`` target projections of the other view.
        mined: ``[B, k, D]`` soft positives (``k`` may be 0); omega: their weights ``[B, k]``.
        queue: ``[M, D]`` written support-set rows; neg_idx, neg_valid: ``[B, N]``.

    Returns:
        ``(loss, L_hard, L_soft)`` means over anchors, with
        ``loss = w_hard L_hard + w_soft L_soft``.
    """
    b, k = mined.shape[0], mined.shape[1]
    s_batch = p @ t.t() / tau
    if not batch_negatives:
        s_batch = s_batch.masked_fill(~torch.eye(b, dtype=torch.bool, device=p.device), float("-inf"))
    s_mined = torch.einsum("bd,bkd->bk", p, mined) / tau
    s_neg = (p @ queue.t()).gather(1, neg_idx) / tau if neg_idx.numel() else p.new_zeros(b, 0)
    s_neg = s_neg.masked_fill(~neg_valid, float("-inf"))
    logp = torch.log_softmax(torch.cat([s_batch, s_mined, s_neg], dim=1), dim=1)
    l_hard = -logp.diagonal()[:b].mean()
    l_soft = -(omega * logp[:, b:b + k]).sum(dim=1).mean() if k else p.new_zeros(())
    return w_hard * l_hard + w_soft * l_soft, l_hard, l_soft


class PSM(SupportSetObjective):
    """PSM objective module (queue of target projections; enqueues ``t2``).

    Args:
        tau: temperature of ``P_b`` (> 0), default 0.2.
        k: mined soft positives per anchor, default 5.
        tau_w: temperature of the soft-positive weights ``ω``, default 0.1.
        w_hard, w_soft: weights of ``L_hard`` / ``L_soft``, defaults 1.0 / 0.5.
        sampler: ``"gaussian"`` (keep with probability ``π_n``, default) or ``"band"``.
        a, delta: width and offset of ``π_n``, defaults 0.1 / 0.1.
        n_neg: most queue negatives kept per anchor (and ``R`` of the band), default 4096.
        band_drop: ``r0`` of the band sampler (top-ranked negatives skipped), default 32.
        batch_negatives: also use the batch's other target projections as negatives (default True).
        neighbours: selector for the soft positives (default ``"topk"`` with ``k``).
        seed: seeds the negative sampling (and a ``pnn`` selector's noise).

    Cold start: while the support set holds fewer than ``k`` rows there are no soft
    positives and no queue negatives; the loss is ``w_hard`` times in-batch InfoNCE (the
    in-batch negatives are then used even when ``batch_negatives`` is False).
    """

    name: ClassVar[str] = "psm"
    requirements = Requirements(predictor=True, target=True, support_set=True)

    def __init__(
        self,
        tau: float = 0.2,
        k: int = 5,
        tau_w: float = 0.1,
        w_hard: float = 1.0,
        w_soft: float = 0.5,
        sampler: str = "gaussian",
        a: float = 0.1,
        delta: float = 0.1,
        n_neg: int = 4096,
        band_drop: int = 32,
        batch_negatives: bool = True,
        neighbours: SelectorSpec = None,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(seed)
        self.tau = check_positive(self.name, "tau", tau)
        self.k = check_int(self.name, "k", k, 1)
        self.tau_w = check_positive(self.name, "tau_w", tau_w)
        self.w_hard = check_between(self.name, "w_hard", w_hard, 0.0, None)
        self.w_soft = check_between(self.name, "w_soft", w_soft, 0.0, None)
        self.sampler = check_choice(self.name, "sampler", sampler, SAMPLERS)
        self.a = check_positive(self.name, "a", a)
        self.delta = check_between(self.name, "delta", delta, -2.0, 2.0)
        self.n_neg = check_int(self.name, "n_neg", n_neg, 1)
        self.band_drop = check_int(self.name, "band_drop", band_drop, 0)
        self.batch_negatives = check_bool(self.name, "batch_negatives", batch_negatives)
        self.choose_selector(neighbours, "topk", {"topk": {"k": self.k}, "pnn": {"k": self.k}})

    def _negatives(self, p: Tensor, t: Tensor, queue: Tensor, mined_rows: Tensor,
                   generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        s_neg = (p.detach() @ queue.t()).float()
        eligible = torch.ones_like(s_neg, dtype=torch.bool)
        eligible.scatter_(1, mined_rows, False)  # mined positives are not negatives
        if self.sampler == "band":
            return sample_negatives_band(s_neg, eligible, drop=self.band_drop, keep=self.n_neg)
        s_pos = (p.detach() * t).sum(dim=1).float()
        return sample_negatives_gaussian(s_neg, s_pos, eligible, a=self.a, delta=self.delta,
                                         n_neg=self.n_neg, generator=generator)

    def views(self, outputs: ViewOutputs) -> Views:
        p1, p2 = self.two(outputs, "p")
        t1, t2 = (t.detach() for t in self.two(outputs, "t"))
        return {"p1": p1, "p2": p2, "t1": t1, "t2": t2}

    def query(self, v: Views) -> Tensor:
        return torch.cat([v["t2"], v["t1"]])

    def terms(self, v: Views, found: Optional[Neighbours], query: Tensor, support: SupportSet,
              generator: Optional[torch.Generator]) -> Terms:
        p1, p2, t1, t2 = v["p1"], v["p2"], v["t1"], v["t2"]
        b = p1.shape[0]
        diag: Diagnostics = {}
        if found is None:
            empty_m = query.new_zeros(b, 0, query.shape[1])
            no_queue = query.new_zeros(0, query.shape[1])
            no_idx = torch.zeros(b, 0, dtype=torch.long, device=p1.device)
            no_valid = torch.zeros(b, 0, dtype=torch.bool, device=p1.device)
            res = [psm_view_loss(p, t, empty_m, empty_m[:, :, 0], no_queue, no_idx, no_valid, tau=self.tau,
                                 w_hard=self.w_hard, w_soft=self.w_soft, batch_negatives=True)
                   for p, t in ((p1, t2), (p2, t1))]
        else:
            # A copy: autograd keeps the queue for backward, and this step's enqueue
            # writes into the buffer in place.
            queue = support.embeddings[: len(support)].to(p1.dtype, copy=True)
            mined = found.embeddings.detach()
            res, kept_sims, kept_counts = [], [], []
            for p, t, m, rows in ((p1, t2, mined[:b], found.rows[:b]), (p2, t1, mined[b:], found.rows[b:])):
                omega = soft_positive_weights(t, m, self.tau_w)
                idx, valid = self._negatives(p, t, queue, rows, generator)
                res.append(psm_view_loss(p, t, m, omega, queue, idx, valid, tau=self.tau, w_hard=self.w_hard,
                                         w_soft=self.w_soft, batch_negatives=self.batch_negatives))
                sims = (p.detach() @ queue.t()).gather(1, idx)
                kept_sims.append(sims[valid])
                kept_counts.append(valid.sum(dim=1).float())
            all_kept = torch.cat(kept_sims)
            diag["neg_sim_mean"] = float(all_kept.mean()) if all_kept.numel() else float("nan")
            diag["neg_kept"] = float(torch.cat(kept_counts).mean())
        loss = 0.5 * (res[0][0] + res[1][0])
        diag.update({
            "loss_hard": float(0.5 * (res[0][1] + res[1][1]).detach()),
            "loss_soft": float(0.5 * (res[0][2] + res[1][2]).detach()),
            "emb_std": embedding_std(p1),
        })
        return Terms(loss, diag)

    def neighbour_diagnostics(self, found: Neighbours, support: SupportSet, outputs: ViewOutputs,
                              blocks: int, weights: Optional[Tensor]) -> Diagnostics:
        stats = super().neighbour_diagnostics(found, support, outputs, blocks, weights)
        if "nn_purity" in stats:
            stats["mined_purity"] = stats["nn_purity"]
        return stats

    def stored(self, v: Views) -> Tensor:
        return v["t2"]


OBJECTIVES.register("psm")(PSM)
