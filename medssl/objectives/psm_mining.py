"""PSM's mining: which support-set rows become soft positives' weights and negatives.

Each mechanism of the reconstruction is its own pure function so the published
equations can replace it: :func:`soft_positive_weights` (PPSM) and
:func:`band_probability` / :func:`sample_negatives_gaussian` /
:func:`sample_negatives_band` (PNSM); :func:`mine_negatives` applies the chosen sampler
to one view. The loss that consumes them is :func:`medssl.objectives.psm.psm_view_loss`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

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


def mine_negatives(
    p: Tensor, t: Tensor, queue: Tensor, mined_rows: Tensor, *, sampler: str = "gaussian",
    a: float = 0.1, delta: float = 0.1, n_neg: int = 4096, band_drop: int = 32,
    generator: Optional[torch.Generator] = None, excluded: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """The kept queue negatives of anchors ``p [B, D]`` (positives ``t [B, D]``).

    Every written row of ``queue [M, D]`` is eligible except the anchor's own mined
    positives ``mined_rows [B, k]`` and the rows ``excluded [B, M]`` marks (older rows of
    the anchor's own image: a false negative by construction); ``sampler`` is ``"gaussian"``
    (:func:`sample_negatives_gaussian`) or ``"band"`` (:func:`sample_negatives_band`).
    Returns ``idx [B, N]`` and ``valid [B, N]``.
    """
    s_neg = (p.detach() @ queue.t()).float()
    eligible = torch.ones_like(s_neg, dtype=torch.bool)
    eligible.scatter_(1, mined_rows, False)  # mined positives are not negatives
    if excluded is not None:
        eligible &= ~excluded.to(eligible.device)
    if sampler == "band":
        return sample_negatives_band(s_neg, eligible, drop=band_drop, keep=n_neg)
    s_pos = (p.detach() * t).sum(dim=1).float()
    return sample_negatives_gaussian(s_neg, s_pos, eligible, a=a, delta=delta, n_neg=n_neg, generator=generator)


def nothing_mined(t: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Cold start's empty mining for positives ``t [B, D]`` (dtype and device follow ``t``):
    ``(mined [B, 0, D], omega [B, 0], queue [0, D], idx [B, 0], valid [B, 0])``, the
    arguments after ``p, t`` of :func:`medssl.objectives.psm.psm_view_loss`."""
    b, d = t.shape
    mined = t.new_zeros(b, 0, d)
    idx = torch.zeros(b, 0, dtype=torch.long, device=t.device)
    return mined, mined[:, :, 0], t.new_zeros(0, d), idx, idx.bool()
