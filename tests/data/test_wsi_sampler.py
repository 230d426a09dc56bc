"""The shard-aware epoch order (medssl/data/wsi_sampler.py): a partition over ranks and
workers, slide balancing, fixed epoch length, resume mid-epoch."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.data.wsi_sampler import ShardSampler

# 3 slides: a huge one (5 shards of 100), two small ones (one shard of 30 and of 20)
SIZES = [100, 100, 100, 100, 100, 30, 20]
SLIDE = [0, 0, 0, 0, 0, 1, 2]


def _shard_of(idx):
    starts = np.concatenate([[0], np.cumsum(SIZES)])
    return np.searchsorted(starts, idx, side="right") - 1


@pytest.mark.parametrize("world, workers", [(1, 0), (2, 2), (3, 1), (2, 3)])
def test_ranks_partition_the_epoch(world, workers):
    per_rank = [ShardSampler(SIZES, SLIDE, 8, seed=1, rank=r, world_size=world, num_workers=workers).indices(0)
                for r in range(world)]
    all_idx = np.concatenate(per_rank)
    assert len(set(all_idx.tolist())) == len(all_idx)  # no tile twice in the epoch
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) % 8 == 0
    assert len(all_idx) > sum(SIZES) - world * max(1, workers) * 8 - world * max(1, workers)


def test_each_worker_reads_its_own_shards():
    s = ShardSampler(SIZES, SLIDE, 10, seed=0, num_workers=2)
    batches = s.batches(0)
    shards_of_worker = [set(), set()]
    for i, b in enumerate(batches):  # the DataLoader deals batch i to worker i % 2
        shards_of_worker[i % 2] |= set(_shard_of(b).tolist())
    assert len(shards_of_worker[0] & shards_of_worker[1]) <= 1  # at most the boundary shard
    assert all(len(w) <= 5 for w in shards_of_worker)


def test_tiles_per_slide_balances_slides():
    s = ShardSampler(SIZES, SLIDE, 5, seed=0, tiles_per_slide=20)
    idx = s.indices(0)
    slide_of = np.asarray(SLIDE)[_shard_of(idx)]
    counts = np.bincount(slide_of, minlength=3)
    assert counts.tolist() == [20, 20, 20] and len(set(idx.tolist())) == 60
    other = ShardSampler(SIZES, SLIDE, 5, seed=0, tiles_per_slide=20).indices(1)
    assert set(other.tolist()) != set(idx.tolist())  # a fresh draw of the big slide each epoch


def test_epoch_length_is_fixed_and_orders_differ():
    s = ShardSampler(SIZES, SLIDE, 16, seed=0, world_size=2, rank=1, num_workers=2, tiles_per_slide=70)
    lengths = {len(s.indices(e)) for e in range(5)}
    assert len(lengths) == 1 and s.batches_per_epoch * 16 == lengths.pop()
    assert not np.array_equal(s.indices(0), s.indices(1))
    same = ShardSampler(SIZES, SLIDE, 16, seed=0, world_size=2, rank=1, num_workers=2, tiles_per_slide=70)
    np.testing.assert_array_equal(s.indices(3), same.indices(3))


def test_resume_starts_mid_epoch():
    s = ShardSampler(SIZES, SLIDE, 8, seed=2)
    full = list(s.indices(4))
    s.set_position(4, 3)
    assert len(s) == (s.batches_per_epoch - 3) * 8
    assert list(s) == full[24:]
    assert list(s) == full  # the next iteration is a whole epoch again


def test_few_tiles_fall_back_to_one_bucket_per_rank():
    s = ShardSampler([10, 10], [0, 1], 8, num_workers=4)
    assert s.batches_per_epoch == 2


def test_empty_or_bad_input():
    with pytest.raises(ValueError, match="empty"):
        ShardSampler([0], [0], 4)
    with pytest.raises(ValueError, match="tiles_per_slide"):
        ShardSampler([4], [0], 4, tiles_per_slide=0)
