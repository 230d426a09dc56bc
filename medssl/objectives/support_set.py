"""The support set Q: a FIFO queue of normalised embeddings used for neighbour look-ups.

Each row holds a unit embedding ``[D]`` (float32), the dataset index of its image and its
label (``-1`` when unknown). The queue is written strictly in order: row ``ptr`` is the
oldest, and while the queue is not yet full the written rows are exactly
``0 .. num_filled-1``, so look-ups only ever see written rows.

Contract with the objectives: perform all look-ups of a step first, then :meth:`enqueue`
(no self-hits from the same step). Under ``torch.distributed`` the rows of every rank are
all-gathered before enqueue (rank order), so every rank holds the same queue; ranks may
enqueue different numbers of rows.

Exclusion (``exclude_same_image``, on by default): a look-up given the queries' dataset
indices never returns a row of the same image -- with the queue as large as the training
set, from the second epoch on it holds an older embedding of every image, and that copy
would otherwise often be the "nearest neighbour". With ``exclusion_groups`` (dataset index
-> group, e.g. the slide of each WSI tile) no row of the same group is returned either.
Excluded rows are ranked after every other row, so a query with fewer than ``k`` other
rows still gets ``k`` (only then may an excluded one appear; the diagnostics count it).

All state lives in persistent buffers (saved in ``state_dict``; a resumed run continues
exactly). ``ptr`` and ``num_filled`` are mirrored as Python ints so that a look-up does
not need a device->host synchronisation: change the queue only through :meth:`enqueue`,
:meth:`reset` and ``load_state_dict``. Keep the support set outside a
DistributedDataParallel-wrapped module (it belongs to the objective): DDP's buffer
broadcast would rewrite the buffers behind the mirrors' back.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.errors import ConfigError

# Auto-chunk the similarity matrix above this many elements (~128 MiB of float32).
_AUTO_CHUNK_ELEMENTS = 1 << 25
# Subtracted from an excluded row's cosine (in [-1, 1]): it ranks below every other row.
_EXCLUDED_PENALTY = 4.0


def _distributed_world() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _all_gather_rows(emb: Tensor, meta: Tensor) -> Tuple[Tensor, Tensor]:
    """All-gather ``emb [b_r, D]`` and ``meta [b_r, 2]`` from every rank, concatenated in
    rank order; ``b_r`` may differ between ranks (rows are padded to the largest)."""
    world = dist.get_world_size()
    n = torch.tensor([emb.shape[0]], device=emb.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    top = max(counts)
    pad = top - emb.shape[0]
    if pad:
        emb = torch.cat([emb, emb.new_zeros(pad, emb.shape[1])])
        meta = torch.cat([meta, meta.new_full((pad, meta.shape[1]), -1)])
    embs = [torch.empty_like(emb) for _ in range(world)]
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(embs, emb.contiguous())
    dist.all_gather(metas, meta.contiguous())
    return (
        torch.cat([e[:c] for e, c in zip(embs, counts)]),
        torch.cat([m[:c] for m, c in zip(metas, counts)]),
    )


class SupportSet(nn.Module):
    """FIFO queue of ``size`` unit embeddings of width ``dim``, with indices and labels.

    Args:
        size: capacity M (rows).
        dim: embedding width D.
        gather_distributed: under torch.distributed with world size > 1, enqueue the rows
            of all ranks (default on) so every rank holds the same queue.
        dataset_size: number of training images; a larger ``size`` is capped to it with a
            warning (older embeddings of the same image would only crowd the queue).
        exclude_same_image: a look-up given query indices (:meth:`topk_excluding`) never
            returns a row stored with the same dataset index (default on; rows or queries
            with an unknown index, ``-1``, are never excluded).
        exclusion_groups: optional ``[N]`` int group of each dataset index (e.g. the slide
            of each tile): then no row of the query's group is returned. Not saved in the
            state dict (it is derived from the data set).
    """

    embeddings: Tensor
    indices: Tensor
    labels: Tensor
    ptr: Tensor
    num_filled: Tensor

    def __init__(
        self, size: int, dim: int, *, gather_distributed: bool = True, dataset_size: Optional[int] = None,
        exclude_same_image: bool = True, exclusion_groups: Optional[Tensor] = None,
    ) -> None:
        super().__init__()
        size, dim = int(size), int(dim)
        if size < 1 or dim < 1:
            raise ConfigError(f"support set size and dim must be >= 1; got size={size}, dim={dim}")
        if dataset_size is not None and 0 < int(dataset_size) < size:
            warnings.warn(
                f"support set size {size} is larger than the training set ({int(dataset_size)} "
                f"images); capping it to {int(dataset_size)}",
                stacklevel=2,
            )
            size = int(dataset_size)
        self.gather_distributed = bool(gather_distributed)
        self.exclude_same_image = bool(exclude_same_image)
        if exclusion_groups is not None:
            exclusion_groups = torch.as_tensor(exclusion_groups, dtype=torch.long).reshape(-1)
        self.register_buffer("exclusion_groups", exclusion_groups, persistent=False)
        self.register_buffer("embeddings", torch.zeros(size, dim, dtype=torch.float32))
        self.register_buffer("indices", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_filled", torch.zeros((), dtype=torch.long))
        self._ptr = 0
        self._filled = 0

    # ------------------------------------------------------------------ state
    @property
    def capacity(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return self._filled

    @property
    def excludes(self) -> bool:
        """Whether look-ups given query indices mask rows of the same image (or group)."""
        return self.exclude_same_image or self.exclusion_groups is not None

    def extra_repr(self) -> str:
        return (f"capacity={self.capacity}, dim={self.dim}, filled={self._filled}, "
                f"exclude_same_image={self.exclude_same_image}, groups={self.exclusion_groups is not None}")

    @torch.no_grad()
    def reset(self) -> None:
        """Empty the queue."""
        self.embeddings.zero_()
        self.indices.fill_(-1)
        self.labels.fill_(-1)
        self.ptr.zero_()
        self.num_filled.zero_()
        self._ptr = self._filled = 0

    def _load_from_state_dict(
        self, state_dict: Dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
        missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str],
    ) -> None:
        key = prefix + "embeddings"
        if key in state_dict and tuple(state_dict[key].shape) != tuple(self.embeddings.shape):
            m, d = tuple(state_dict[key].shape)
            raise ConfigError(
                f"support set in the checkpoint has size={m}, dim={d} but this one has "
                f"size={self.capacity}, dim={self.dim}; use the same support-set size and "
                "projection dim as the checkpointed run (or start a fresh run)"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._ptr = int(self.ptr.item())
        self._filled = int(self.num_filled.item())

    # ------------------------------------------------------------------ write
    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, indices: Optional[Tensor] = None, labels: Optional[Tensor] = None) -> None:
        """Append ``embeddings [B, D]`` (normalised, detached, stored as float32) with their
        dataset ``indices [B]`` and ``labels [B]`` (``-1`` / ``None`` = unknown).

        Rows of all ranks are gathered first under torch.distributed. When more rows
        arrive than the capacity, the newest ``capacity`` rows are kept.
        """
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"enqueue expects embeddings [B, {self.dim}]; got {tuple(embeddings.shape)}")
        b = embeddings.shape[0]
        dev = self.embeddings.device
        emb = F.normalize(embeddings.detach().to(device=dev, dtype=torch.float32), dim=1)
        meta = torch.full((b, 2), -1, dtype=torch.long, device=dev)
        for col, values in ((0, indices), (1, labels)):
            if values is not None:
                values = values.detach().reshape(-1)
                if values.shape[0] != b:
                    raise ValueError(f"enqueue got {b} embeddings but {values.shape[0]} indices/labels")
                meta[:, col] = values.to(device=dev, dtype=torch.long)
        if self.gather_distributed and _distributed_world() > 1:
            emb, meta = _all_gather_rows(emb, meta)
        n = emb.shape[0]
        if n == 0:
            return
        m = self.capacity
        if n > m:  # equivalent to writing all n rows in order: only the newest m survive
            emb, meta = emb[n - m:], meta[n - m:]
            start = (self._ptr + n - m) % m
        else:
            start = self._ptr
        pos = (start + torch.arange(emb.shape[0], device=dev)) % m
        self.embeddings[pos] = emb.to(self.embeddings.dtype)
        self.indices[pos] = meta[:, 0]
        self.labels[pos] = meta[:, 1]
        self._ptr = (self._ptr + n) % m
        self._filled = min(m, self._filled + n)
        self.ptr.fill_(self._ptr)
        self.num_filled.fill_(self._filled)

    # ------------------------------------------------------------------ read
    @torch.no_grad()
    def topk(self, query: Tensor, k: int, chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Cosine top-``k`` of each query row among the written rows (no exclusion).

        Args:
            query: ``[B, D]`` any float dtype (normalised here; similarities in float32).
            k: neighbours per query, ``1 <= k <= len(self)``.
            chunk_size: queue rows per matrix product; ``None`` chunks automatically when
                ``B * len(self)`` is large. The result does not depend on it.

        Returns:
            ``sims [B, k]`` float32 (descending) and ``rows [B, k]`` int64 queue rows;
            both detached.
        """
        sims, rows, _ = self._topk(query, k, chunk_size, None)
        return sims, rows

    @torch.no_grad()
    def topk_excluding(self, query: Tensor, k: int, query_indices: Optional[Tensor],
                       chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """:meth:`topk` without the rows of each query's own image (or group).

        Args:
            query_indices: ``[B]`` dataset index of each query (``-1`` = unknown) or None.
                Ignored (plain :meth:`topk`) when this support set excludes nothing.

        Returns:
            ``sims [B, k]``, ``rows [B, k]`` as :meth:`topk` (true cosines), and
            ``displaced [B]`` bool: the query's nearest row *before* exclusion was one of
            its own image / group (None when nothing was excluded).
        """
        keys = self._query_keys(query_indices, query.shape[0]) if self.excludes else None
        return self._topk(query, k, chunk_size, keys)

    def _query_keys(self, query_indices: Optional[Tensor], b: int) -> Optional[Tensor]:
        """Exclusion key ``[B]`` of each query (its index, or its group), ``-1`` = none."""
        if query_indices is None:
            return None
        qi = query_indices.detach().reshape(-1).to(device=self.indices.device, dtype=torch.long)
        if qi.shape[0] != b:
            raise ValueError(f"topk_excluding got {b} queries but {qi.shape[0]} query indices")
        return self.exclusion_keys(qi)

    def exclusion_keys(self, idx: Tensor) -> Tensor:
        """What a look-up compares to exclude a row: the dataset indices ``idx`` themselves, or
        their group (``exclusion_groups``); unknown (``-1`` or out of range) gives ``-1``."""
        groups = self.exclusion_groups
        if groups is None:
            return idx
        known = (idx >= 0) & (idx < groups.shape[0])
        return torch.where(known, groups.to(idx.device)[idx.clamp(0, groups.shape[0] - 1)], torch.full_like(idx, -1))

    def _topk(self, query: Tensor, k: int, chunk_size: Optional[int],
              keys: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        filled = self._filled
        if k < 1 or k > filled:
            raise ValueError(
                f"cannot take the top-{k} neighbours from a support set holding {filled} rows; "
                "check len(support) before the look-up"
            )
        if query.ndim != 2 or query.shape[1] != self.dim:
            raise ValueError(f"topk expects a query [B, {self.dim}]; got {tuple(query.shape)}")
        q = F.normalize(query.detach().to(device=self.embeddings.device, dtype=torch.float32), dim=1)
        bank = self.embeddings[:filled].float()
        row_keys = self.exclusion_keys(self.indices[:filled]) if keys is not None else None
        if chunk_size is None:
            chunk_size = max(k, _AUTO_CHUNK_ELEMENTS // max(1, q.shape[0]))
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
        best_s: Optional[Tensor] = None  # ranking scores (excluded rows penalised)
        best_r: Optional[Tensor] = None
        best_excluded: Optional[Tensor] = None  # highest cosine among the excluded rows
        for start in range(0, filled, chunk_size):
            s = q @ bank[start:start + chunk_size].T
            if keys is not None and row_keys is not None:
                rk = row_keys[start:start + chunk_size]
                mask = (keys[:, None] == rk[None, :]) & (keys[:, None] >= 0)
                top_ex = s.masked_fill(~mask, float("-inf")).amax(dim=1)
                best_excluded = top_ex if best_excluded is None else torch.maximum(best_excluded, top_ex)
                s = s - _EXCLUDED_PENALTY * mask.float()
            s, r = torch.topk(s, min(k, s.shape[1]), dim=1)
            r = r + start
            if best_s is None:
                best_s, best_r = s, r
            else:  # exact merge: the global top-k is within the union of per-chunk top-k
                cand_s, cand_r = torch.cat([best_s, s], 1), torch.cat([best_r, r], 1)
                best_s, sel = torch.topk(cand_s, min(k, cand_s.shape[1]), dim=1)
                best_r = cand_r.gather(1, sel)
        assert best_s is not None and best_r is not None
        if best_excluded is None or keys is None or row_keys is None:
            return best_s, best_r, None
        # the true cosines: an excluded row chosen only for want of others gets its penalty back
        chosen_excluded = (row_keys[best_r] == keys[:, None]) & (keys[:, None] >= 0)
        sims = best_s + _EXCLUDED_PENALTY * chosen_excluded.float()
        return sims, best_r, best_excluded > sims[:, 0]

    def nearest(self, query: Tensor, chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Cosine nearest neighbour: ``sims [B]``, ``rows [B]``."""
        s, r = self.topk(query, 1, chunk_size)
        return s[:, 0], r[:, 0]

    def gather(self, rows: Tensor) -> Tensor:
        """Stored embeddings of ``rows`` (any shape): ``[..., D]`` float32, no gradient."""
        return self.embeddings[rows]

    def labels_of(self, rows: Tensor) -> Tensor:
        """Stored labels of ``rows`` (``-1`` = unknown), same shape as ``rows``."""
        return self.labels[rows]

    def indices_of(self, rows: Tensor) -> Tensor:
        """Stored dataset indices of ``rows`` (``-1`` = unknown), same shape as ``rows``."""
        return self.indices[rows]
