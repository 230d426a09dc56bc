"""SupportSet under torch.distributed (2 CPU processes, gloo): every rank ends with the
same queue, equal to the rows of all ranks concatenated in rank order, and a look-up that
excludes the queries' own images returns the same rows on every rank (none of those images)."""

from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from medssl.objectives.support_set import SupportSet

WORLD = 2
# Per step, rows enqueued by rank 0 and rank 1 (unequal on purpose; the last step wraps).
STEPS = [(3, 5), (4, 4), (6, 2)]
M, D = 12, 4


def _rows(rank: int, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * rank + step)
    emb = F.normalize(torch.randn(n, D, generator=g), dim=1)
    idx = torch.arange(n) + 100 * rank + 10 * step
    return emb, idx, idx % 2


def _queries(support: SupportSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Near-copies of four stored rows (two written by each rank), under their indices."""
    pick = torch.tensor([0, 3, 6, 9])
    q = support.embeddings[pick] + 0.01 * torch.randn(4, D, generator=torch.Generator().manual_seed(7))
    return q, support.indices[pick].clone()


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # two processes on a shared 2-core machine
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        shared = SupportSet(M, D, gather_distributed=True)
        local = SupportSet(M, D, gather_distributed=False)
        for step, sizes in enumerate(STEPS):
            for s in (shared, local):
                s.enqueue(*_rows(rank, step, sizes[rank]))
        # the same queries on every rank, as after the loop's all-gather: images stored by both ranks
        q, qi = _queries(shared)
        sims, rows, displaced = shared.topk_excluding(q, 3, qi)
        torch.save(
            {"shared": shared.state_dict(), "local": local.state_dict(), "rows": rows, "sims": sims,
             "displaced": displaced}, os.path.join(out_dir, f"rank{rank}.pt")
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> list[dict]:
    """Run the 2-process job once; per rank, the state of a gathering and a local queue."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.timeout(120)
def test_all_ranks_hold_the_same_queue_in_rank_order(states: list[dict]) -> None:
    ref = SupportSet(M, D, gather_distributed=False)
    for step, sizes in enumerate(STEPS):
        parts = [_rows(r, step, sizes[r]) for r in range(WORLD)]
        ref.enqueue(*(torch.cat(p) for p in zip(*parts)))
    for state in states:
        for key, value in ref.state_dict().items():
            assert torch.equal(state["shared"][key], value), key
    assert int(states[0]["shared"]["num_filled"]) == M  # 24 rows went through a 12-row queue


@pytest.mark.timeout(120)
def test_gather_off_keeps_local_rows(states: list[dict]) -> None:
    for rank, state in enumerate(states):
        ref = SupportSet(M, D, gather_distributed=False)
        for step, sizes in enumerate(STEPS):
            ref.enqueue(*_rows(rank, step, sizes[rank]))
        assert torch.equal(state["local"]["indices"], ref.indices)
        assert torch.equal(state["local"]["embeddings"], ref.embeddings)


@pytest.mark.timeout(120)
def test_exclusion_gives_the_same_rows_on_every_rank_and_never_the_query_image(states: list[dict]) -> None:
    ref = SupportSet(M, D, gather_distributed=False)
    ref.load_state_dict(states[0]["shared"])
    q, qi = _queries(ref)
    # the naive reference: per query, the best rows of any other image
    sims = F.normalize(q, dim=1) @ ref.embeddings.T
    expect = []
    for b in range(q.shape[0]):
        order = sorted(range(M), key=lambda r: (bool(ref.indices[r] == qi[b]), -float(sims[b, r])))
        expect.append(order[:3])
    for state in states:
        assert torch.equal(state["rows"], torch.tensor(expect))
        assert not (ref.indices[state["rows"]] == qi[:, None]).any()
        assert bool(state["displaced"].all())  # each query's nearest row was its own image's
    assert torch.equal(states[0]["sims"], states[1]["sims"])
