"""A shuffling sampler whose order is a pure function of (seed, epoch), split across ranks,
that can start part-way through an epoch: what exact resume needs."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Yields this rank's share of a seeded permutation of ``range(length)``.

    Each epoch's permutation comes from ``torch.Generator().manual_seed(seed + epoch)`` and
    is cut into global batches of ``W * batch_size``; rank ``r`` of ``W`` takes the ``r``-th
    block of ``batch_size`` of each, so the global batch gathered in rank order is exactly
    the batch a single process with ``W * batch_size`` would draw. Incomplete global batches
    are dropped, as SSL training usually does.
    ``set_position(epoch, batch)`` makes the next iteration start at that batch.
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True) -> None:
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch on each rank."""
        return self.length // (self.world_size * self.batch_size)

    def set_position(self, epoch: int, batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = batch

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``, in order (without the start offset)."""
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(self.length)
        used = self.batches_per_epoch * self.batch_size * self.world_size
        blocks = order[:used].view(self.batches_per_epoch, self.world_size, self.batch_size)
        return blocks[:, self.rank, :].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        idx = self.indices(self.epoch)[self.start_batch * self.batch_size :]
        self.start_batch = 0  # only the first iteration after a resume is partial
        return iter(idx.tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
