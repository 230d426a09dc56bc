"""An epoch order for sharded tile sets: shards split across ranks and DataLoader workers,
optionally at most ``tiles_per_slide`` tiles of each slide per epoch.

Each epoch (seeded by ``seed`` and the epoch number, so every rank computes the same
plan without talking to the others):

1. every slide contributes all its tiles, or ``tiles_per_slide`` of them drawn at random,
   so one huge slide cannot dominate an epoch;
2. the shards, in a random order, are laid end to end and cut into ``world_size *
   num_workers`` equal buckets, one per (rank, worker): a worker reads only its own run of
   shards (two neighbouring buckets may share a boundary shard, never a tile), so it keeps
   few files open and reads them with locality;
3. each bucket is shuffled and cut into batches; a rank's batches alternate between its
   workers' buckets in the order the DataLoader deals batches to workers (round robin);
4. equal buckets give every rank the same number of full batches in every epoch, as DDP
   and the training loop's step arithmetic need (the remainder, < one bucket, is dropped).

The buckets partition the epoch's tiles, so no tile is read twice in an epoch on any
rank or worker. The interface matches :class:`medssl.train.sampler.ResumableSampler`
(``batches_per_epoch``, ``set_position``), so a resumed run continues mid-epoch.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Yields this rank's tile indices for the epoch (see the module docstring).

    ``shard_sizes`` (S,) are the tile counts of the shards in dataset order (shard ``s``
    holds indices ``offsets[s] .. offsets[s] + shard_sizes[s] - 1``), ``shard_slide`` (S,)
    the slide index of each shard.
    """

    def __init__(self, shard_sizes: Sequence[int], shard_slide: Sequence[int], batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 tiles_per_slide: Optional[int] = None) -> None:
        self.sizes = np.asarray(shard_sizes, dtype=np.int64)
        self.slide = np.asarray(shard_slide, dtype=np.int64)
        if len(self.sizes) != len(self.slide) or self.sizes.sum() <= 0:
            raise ValueError("cannot sample from an empty tile set")
        if tiles_per_slide is not None and tiles_per_slide < 1:
            raise ValueError(f"tiles_per_slide must be at least 1, got {tiles_per_slide}")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.workers = max(1, int(num_workers))
        self.tiles_per_slide = tiles_per_slide
        self.epoch = 0
        self.start_batch = 0
        self._cache: tuple = (None, None)

    def _chosen(self, rng: np.random.Generator) -> List[np.ndarray]:
        """The tile indices each shard contributes this epoch."""
        full = [np.arange(o, o + n) for o, n in zip(self.offsets, self.sizes)]
        if self.tiles_per_slide is None:
            return full
        out = [np.zeros(0, dtype=np.int64)] * len(full)
        for s_id in np.unique(self.slide):
            shards = np.flatnonzero(self.slide == s_id)
            tiles = np.concatenate([full[s] for s in shards])
            if len(tiles) > self.tiles_per_slide:
                tiles = np.sort(rng.choice(tiles, size=self.tiles_per_slide, replace=False))
            owner = np.searchsorted(self.offsets, tiles, side="right") - 1
            for s in shards:
                out[s] = tiles[owner == s]
        return out

    def _layout(self, total: int) -> tuple:
        """``(workers, tiles per bucket)``: one bucket per (rank, worker) when each can fill a
        batch, else one bucket per rank."""
        for workers in (self.workers, 1):
            per_bucket = total // (self.world_size * workers)
            if per_bucket >= self.batch_size or workers == 1:
                return workers, per_bucket
        raise AssertionError  # pragma: no cover

    def batches(self, epoch: int) -> List[np.ndarray]:
        """This rank's full batches for ``epoch``; the count is the same on every rank and
        in every epoch (the epoch's tile count does not change)."""
        if self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        chosen = self._chosen(rng)
        order = rng.permutation(len(chosen))
        tiles = np.concatenate([chosen[s] for s in order])
        workers, per_bucket = self._layout(len(tiles))
        n_batches = per_bucket // self.batch_size
        queues = []
        for w in range(workers):
            b = self.rank * workers + w
            bucket = np.random.default_rng([self.seed, epoch, b]).permutation(tiles[b * per_bucket:(b + 1) * per_bucket])
            queues.append([bucket[i * self.batch_size:(i + 1) * self.batch_size] for i in range(n_batches)])
        # round robin, as the DataLoader deals batches to its workers
        out = [q[i] for i in range(n_batches) for q in queues]
        self._cache = (epoch, out)
        return out

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch on each rank (of the current epoch's plan)."""
        return len(self.batches(self.epoch))

    def set_position(self, epoch: int, batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = batch

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's indices for ``epoch`` in order (without the start offset)."""
        b = self.batches(epoch)
        return np.concatenate(b) if b else np.zeros(0, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        idx = self.indices(self.epoch)[self.start_batch * self.batch_size:]
        self.start_batch = 0
        return iter(idx.tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
