"""PSM (Potential Sample Mining), a reconstruction of its described mechanisms.

The mining (PPSM soft-positive weights, PNSM negative samplers) is in
:mod:`medssl.objectives.psm_mining`; this file holds :func:`psm_view_loss` (the loss of
one view given what was mined) and the :class:`PSM` module that wires them together.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Tuple

import torch
from torch import Tensor

from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Diagnostics, Requirements, embedding_std
from medssl.objectives.common import SelectorSpec, check_between, check_bool, check_choice, check_int, check_positive
from medssl.objectives.neighbours import Neighbours
from medssl.objectives.psm_mining import SAMPLERS, mine_negatives, nothing_mined, soft_positive_weights
from medssl.objectives.psm_mining import (  # noqa: F401  (re-exported: first published here)
    band_probability, sample_negatives_band, sample_negatives_gaussian)
from medssl.objectives.support_objective import SupportSetObjective, Terms, Views
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES


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
        ``(loss, L_hard, L_soft)`` means over anchors, ``loss = w_hard L_hard + w_soft L_soft``.
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


def same_image_rows(support: SupportSet, indices: Optional[Tensor]) -> Optional[Tensor]:
    """``[B, M]`` bool: the written support rows of each anchor's own image (or group) when
    ``support`` excludes them and the anchors' dataset ``indices [B]`` are known, else None."""
    if indices is None or not support.excludes:
        return None
    keys = support.exclusion_keys(indices.reshape(-1).to(support.indices.device, torch.long))
    rows = support.exclusion_keys(support.indices[: len(support)])
    return (keys[:, None] == rows[None, :]) & (keys[:, None] >= 0)


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
        min_fill: support-set warm-up, the filled fraction of the queue before neighbours
            are used (default 0: as soon as it holds ``k`` rows; see :class:`SupportSetObjective`).
        instance_weight, instance_tau: an added SimCLR term on the online projections,
            ``w · NT-Xent(z1, z2)`` (default 0: off; see :class:`SupportSetObjective`).
        instance_schedule, instance_fade_steps, neighbour_warmup_steps: the instance term's
            weight over training and a SimCLR-only warm-up (default constant, 0, 0; see
            :mod:`medssl.objectives.instance_schedule`).
        seed: seeds the negative sampling (and a ``pnn`` selector's noise).

    Cold start: while the support set holds fewer than ``k`` rows there are no soft
    positives and no queue negatives; the loss is ``w_hard`` times in-batch InfoNCE (the
    in-batch negatives are then used even when ``batch_negatives`` is False).
    """

    name: ClassVar[str] = "psm"
    requirements = Requirements(predictor=True, target=True, support_set=True)

    def __init__(self, tau: float = 0.2, k: int = 5, tau_w: float = 0.1, w_hard: float = 1.0, w_soft: float = 0.5,
                 sampler: str = "gaussian", a: float = 0.1, delta: float = 0.1, n_neg: int = 4096,
                 band_drop: int = 32, batch_negatives: bool = True, neighbours: SelectorSpec = None,
                 min_fill: float = 0.0, instance_weight: float = 0.0, instance_tau: float = 0.1,
                 instance_schedule: str = "constant", instance_fade_steps: int = 0,
                 neighbour_warmup_steps: int = 0,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed, min_fill, instance_weight, instance_tau, instance_schedule, instance_fade_steps,
                         neighbour_warmup_steps)
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
                   generator: Optional[torch.Generator], excluded: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Kept queue negatives ``(idx, valid)`` of anchors ``p`` with this module's sampler."""
        return mine_negatives(p, t, queue, mined_rows, sampler=self.sampler, a=self.a, delta=self.delta,
                              n_neg=self.n_neg, band_drop=self.band_drop, generator=generator, excluded=excluded)

    def views(self, outputs: ViewOutputs) -> Views:
        v = self.predictions_and_targets(outputs)
        if outputs.indices is not None:  # last: the skeleton reads B from the first view
            v["indices"] = outputs.indices
        return v

    def query(self, v: Views) -> Tensor:
        return torch.cat([v["t2"], v["t1"]])

    def terms(self, v: Views, found: Optional[Neighbours], query: Tensor, support: SupportSet,
              generator: Optional[torch.Generator]) -> Terms:
        b = v["p1"].shape[0]
        pairs = ((v["p1"], v["t2"]), (v["p2"], v["t1"]))  # (anchor, positive) per direction
        diag: Diagnostics = {}
        if found is None:  # cold start: in-batch InfoNCE, batch negatives always on
            res = [psm_view_loss(p, t, *nothing_mined(t), tau=self.tau, w_hard=self.w_hard,
                                 w_soft=self.w_soft, batch_negatives=True) for p, t in pairs]
        else:
            # A copy: autograd keeps the queue for backward; this step's enqueue writes in place.
            queue = support.embeddings[: len(support)].to(v["p1"].dtype, copy=True)
            mined = found.embeddings.detach()
            res, kept_sims, kept_counts = [], [], []
            excluded = same_image_rows(support, v.get("indices"))
            for (p, t), half in zip(pairs, (slice(0, b), slice(b, None))):
                m = mined[half]
                omega = soft_positive_weights(t, m, self.tau_w)
                idx, valid = self._negatives(p, t, queue, found.rows[half], generator, excluded)
                res.append(psm_view_loss(p, t, m, omega, queue, idx, valid, tau=self.tau, w_hard=self.w_hard,
                                         w_soft=self.w_soft, batch_negatives=self.batch_negatives))
                kept_sims.append((p.detach() @ queue.t()).gather(1, idx)[valid])
                kept_counts.append(valid.sum(dim=1).float())
            all_kept = torch.cat(kept_sims)
            diag["neg_sim_mean"] = float(all_kept.mean()) if all_kept.numel() else float("nan")
            diag["neg_kept"] = float(torch.cat(kept_counts).mean())
        diag.update(loss_hard=float(0.5 * (res[0][1] + res[1][1]).detach()),
                    loss_soft=float(0.5 * (res[0][2] + res[1][2]).detach()), emb_std=embedding_std(v["p1"]))
        return Terms(0.5 * (res[0][0] + res[1][0]), diag)

    def neighbour_diagnostics(self, found: Neighbours, support: SupportSet, outputs: ViewOutputs,
                              blocks: int, weights: Optional[Tensor]) -> Diagnostics:
        stats = super().neighbour_diagnostics(found, support, outputs, blocks, weights)
        return {**stats, "mined_purity": stats["nn_purity"]} if "nn_purity" in stats else stats

    def stored(self, v: Views) -> Tensor:
        return v["t2"]


OBJECTIVES.register("psm")(PSM)
