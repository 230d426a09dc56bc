from __future__ import annotations

import torch

from medssl.train.sampler import ResumableSampler


def test_same_order_for_same_seed_and_epoch_and_drops_partial_batches() -> None:
    a = ResumableSampler(23, batch_size=5, seed=3)
    b = ResumableSampler(23, batch_size=5, seed=3)
    assert list(a) == list(b) and len(list(a)) == 20 == len(a)
    assert len(set(a)) == 20
    a.set_position(1)
    assert list(a) != list(b)


def test_ranks_partition_each_global_batch_like_one_big_process() -> None:
    single = ResumableSampler(40, batch_size=8, seed=0, world_size=1)
    ranks = [ResumableSampler(40, batch_size=4, seed=0, rank=r, world_size=2) for r in range(2)]
    big = list(single)
    per_rank = [list(s) for s in ranks]
    for step in range(5):
        gathered = per_rank[0][step * 4 : step * 4 + 4] + per_rank[1][step * 4 : step * 4 + 4]
        assert gathered == big[step * 8 : step * 8 + 8]


def test_set_position_resumes_mid_epoch_once() -> None:
    s = ResumableSampler(30, batch_size=4, seed=1)
    full = list(s)
    s.set_position(0, batch=3)
    assert len(s) == (7 - 3) * 4
    assert list(s) == full[12:]
    assert list(s) == full  # the next epoch starts from its beginning again


def test_no_shuffle_is_identity() -> None:
    s = ResumableSampler(10, batch_size=3, shuffle=False)
    assert list(s) == list(range(9))
    assert torch.equal(s.indices(0), torch.arange(9))
