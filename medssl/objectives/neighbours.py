"""Neighbour selection from the support set: ``nn``, ``topk`` and ``pnn`` (pseudo neighbours).

Pure functions (:func:`pseudo_neighbour`, :func:`select_neighbours`) plus small selector
objects the objectives call as ``selector(query, support, training=...) -> Neighbours``.
Selectors are registered in :data:`medssl.registry.NEIGHBOURS`, so any objective can be
combined with any selection rule from config (``neighbours: pnn``).

Pseudo nearest neighbour (pNNCLR, Eq. 4-5)::

    u''  = u + (1 - α) (NN(u) - u)        α = 1 -> the query, α = 0 -> the neighbour
    u'   = u'' + σ ε,   ε ~ N(0, I_D),   σ = β ||u - u''||   (one σ per row)

σ is detached: it only scales the noise, and a gradient through it would push the
query towards its neighbour merely to shrink the noise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.config import check_range
from medssl.objectives.support_set import SupportSet
from medssl.registry import NEIGHBOURS


def _check_alpha_beta(alpha: float, beta: float) -> None:
    check_range("pnn alpha", alpha, lo=0.0, hi=1.0)
    check_range("pnn beta (noise scale)", beta, lo=0.0)


def _randn_like(x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    if generator is None:
        return torch.randn_like(x)
    # A generator lives on one device; draw there and move (e.g. a CPU generator for CUDA data).
    eps = torch.randn(x.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return eps.to(device=x.device, dtype=x.dtype)


def pseudo_neighbour(
    u: Tensor,
    nn: Tensor,
    alpha: float,
    beta: float,
    generator: Optional[torch.Generator] = None,
    renormalize: bool = False,
    noise: bool = True,
) -> Tensor:
    """Pseudo nearest neighbour of queries ``u [B, D]`` given neighbours ``nn``.

    Args:
        u: queries ``[B, D]``; gradient flows through the ``α u`` part.
        nn: neighbours ``[B, D]`` or ``[B, K, D]`` (pass them detached).
        alpha: interpolation in ``[0, 1]``.
        beta: noise scale ``>= 0``; σ = β ||u - u''|| per row (detached).
        generator: source of the Gaussian noise (reproducibility).
        renormalize: L2-normalise the result (paper: off).
        noise: add the noise (training); ``False`` gives ``u''``.

    Returns:
        pseudo neighbours, the shape of ``nn``.
    """
    _check_alpha_beta(alpha, beta)
    if nn.ndim == u.ndim + 1:
        u = u.unsqueeze(1)  # [B, 1, D] against [B, K, D]
    elif nn.shape != u.shape:
        raise ValueError(f"neighbours {tuple(nn.shape)} do not match queries {tuple(u.shape)}")
    nn = nn.to(u.dtype)
    mid = u + (1.0 - alpha) * (nn - u)
    if noise and beta > 0.0:
        sigma = float(beta) * (u - mid).detach().norm(dim=-1, keepdim=True)
        mid = mid + sigma * _randn_like(mid, generator)
    return F.normalize(mid, dim=-1) if renormalize else mid


def select_neighbours(query: Tensor, support: SupportSet, k: int,
                      query_indices: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Top-``k`` cosine neighbours of ``query [B, D]``: ``(embeddings [B, k, D], rows [B, k],
    sims [B, k])``; embeddings are detached queue rows in the query's dtype. With
    ``query_indices [B]`` (dataset indices) rows of the query's own image (or group) are
    excluded where ``support`` excludes them (:meth:`SupportSet.topk_excluding`)."""
    found = _nearest_rows(query, support, k, query_indices)
    return found.embeddings, found.rows, found.sims


def _nearest_rows(query: Tensor, support: SupportSet, k: int, query_indices: Optional[Tensor]) -> "Neighbours":
    """:func:`select_neighbours` as a :class:`Neighbours` (with ``displaced``)."""
    sims, rows, displaced = support.topk_excluding(query, k, query_indices)
    return Neighbours(support.gather(rows).to(query.dtype), rows, sims, displaced)


@dataclass
class Neighbours:
    """Result of a neighbour look-up for ``B`` queries and ``K`` neighbours each.

    Attributes:
        embeddings: ``[B, K, D]`` queue rows (detached) or pseudo neighbours (which carry
            the query's gradient unless ``pnn_grad`` is off).
        rows: ``[B, K]`` int64 support-set rows the neighbours came from.
        sims: ``[B, K]`` float32 cosine similarity of the query to each queue row.
        displaced: ``[B]`` bool, the queries whose nearest row was one of their own image
            (or group) and was excluded; None when the look-up excluded nothing.
    """

    embeddings: Tensor
    rows: Tensor
    sims: Tensor
    displaced: Optional[Tensor] = None

    @property
    def first(self) -> Tensor:
        """The first (nearest) neighbour of each query, ``[B, D]``."""
        return self.embeddings[:, 0]

    @property
    def k(self) -> int:
        return int(self.rows.shape[1])


class NeighbourSelector:
    """Base: ``selector(query [B, D], support, training=..., query_indices=...) -> Neighbours``
    (``query_indices [B]``: the queries' dataset indices, for the support set's exclusion)."""

    k: int = 1

    def __call__(
        self, query: Tensor, support: SupportSet, *, training: bool, generator: Optional[torch.Generator] = None,
        query_indices: Optional[Tensor] = None,
    ) -> Neighbours:
        return _nearest_rows(query, support, self.k, query_indices)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


@NEIGHBOURS.register("nn")
class NNSelector(NeighbourSelector):
    """Plain nearest neighbour (NNCLR): K = 1, argmax cosine, stop-gradient."""

    def __init__(self) -> None:
        self.k = 1


@NEIGHBOURS.register("topk")
class TopKSelector(NeighbourSelector):
    """The ``k`` most similar queue rows (SNCLR's candidates, PSM's mined positives)."""

    def __init__(self, k: int = 30) -> None:
        check_range("topk neighbours: k", k, lo=1, integer=True)
        self.k = int(k)


@NEIGHBOURS.register("pnn")
class PseudoNNSelector(NeighbourSelector):
    """Top-``k`` neighbours turned into pseudo neighbours (pNNCLR geometry per neighbour).

    Noise is added only when ``training`` is true. ``pnn_grad=False`` detaches the whole
    pseudo neighbour (otherwise the query's gradient flows through ``α u``).
    ``alpha=0, beta=0`` reproduces plain nearest neighbours.
    """

    def __init__(
        self, k: int = 1, alpha: float = 0.25, beta: float = 0.10, renormalize: bool = False, pnn_grad: bool = True
    ) -> None:
        check_range("pnn neighbours: k", k, lo=1, integer=True)
        _check_alpha_beta(alpha, beta)
        self.k = int(k)
        self.alpha, self.beta = float(alpha), float(beta)
        self.renormalize, self.pnn_grad = bool(renormalize), bool(pnn_grad)

    def __call__(
        self, query: Tensor, support: SupportSet, *, training: bool, generator: Optional[torch.Generator] = None,
        query_indices: Optional[Tensor] = None,
    ) -> Neighbours:
        found = _nearest_rows(query, support, self.k, query_indices)
        pnn = pseudo_neighbour(
            query, found.embeddings, self.alpha, self.beta, generator=generator, renormalize=self.renormalize,
            noise=training,
        )
        return replace(found, embeddings=pnn if self.pnn_grad else pnn.detach())


def build_selector(name: str, **kwargs: Any) -> NeighbourSelector:
    """A selector from config: ``build_selector("pnn", alpha=0.25)``; unknown options are a
    ConfigError naming the option and the valid ones (checked by the registry)."""
    return NEIGHBOURS.build({"name": name, **kwargs})


def neighbour_diagnostics(
    rows: Tensor,
    support: SupportSet,
    query_labels: Optional[Tensor] = None,
    query_indices: Optional[Tensor] = None,
    weights: Optional[Tensor] = None,
    displaced: Optional[Tensor] = None,
) -> Dict[str, float]:
    """Neighbour purity and same-image rate of a look-up (diagnostics only, never a loss).

    Args:
        rows: ``[B, K]`` support-set rows returned by the look-up.
        query_labels: ``[B]`` labels of the queries (``-1`` = unknown).
        query_indices: ``[B]`` dataset indices of the queries.
        weights: ``[B, K]`` non-negative neighbour weights (e.g. SNCLR's w).
        displaced: ``[B]`` bool from an excluding look-up (:class:`Neighbours`).

    Returns:
        ``nn_purity``: fraction of (query, neighbour) pairs with both labels known whose
        labels agree; ``nn_purity_weighted``: the same, weighted; ``nn_same_image``: fraction
        of neighbours with a known index that are an older embedding of the query's image
        (0 with ``exclude_same_image`` unless a query had fewer than K other rows);
        ``nn_same_slide``: the same for the support set's exclusion groups (slides), when
        it has them; ``nn_same_image_excluded``: fraction of queries whose nearest row
        before exclusion was of their own image / group (what exclusion changed).
        A key is left out when it has no pairs to average over (never NaN).
    """
    rows = rows.reshape(rows.shape[0], -1)
    out: Dict[str, float] = {}
    if query_labels is not None:
        ql = query_labels.reshape(-1, 1).to(device=rows.device, dtype=torch.long)
        nl = support.labels_of(rows)
        known = (nl >= 0) & (ql >= 0)
        match = ((nl == ql) & known).float()
        n_known = int(known.sum())
        if n_known:
            out["nn_purity"] = float(match.sum()) / n_known
        if weights is not None:
            w = weights.detach().float().reshape(rows.shape) * known.float()
            total = float(w.sum())
            if total > 0:
                out["nn_purity_weighted"] = float((w * match).sum()) / total
    if query_indices is not None:
        qi = query_indices.reshape(-1, 1).to(device=rows.device, dtype=torch.long)
        ni = support.indices_of(rows)
        known = ni >= 0
        n_known = int(known.sum())
        if n_known:
            out["nn_same_image"] = float(((ni == qi) & known).sum()) / n_known
            if support.exclusion_groups is not None:
                qg, ng = support.exclusion_keys(qi), support.exclusion_keys(ni)
                out["nn_same_slide"] = float(((ng == qg) & (ng >= 0) & known).sum()) / n_known
    if displaced is not None and displaced.numel():
        out["nn_same_image_excluded"] = float(displaced.float().mean())
    return out
