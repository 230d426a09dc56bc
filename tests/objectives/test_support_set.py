"""SupportSet: FIFO order, masking of unwritten rows, exact top-k, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medssl.errors import ConfigError
from medssl.objectives.support_set import SupportSet


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


class ListFIFO:
    """Reference: a circular buffer written one row at a time."""

    def __init__(self, m: int) -> None:
        self.m, self.rows, self.ptr, self.filled = m, [None] * m, 0, 0

    def push(self, items: list) -> None:
        for it in items:
            self.rows[self.ptr] = it
            self.ptr = (self.ptr + 1) % self.m
            self.filled = min(self.m, self.filled + 1)


@pytest.mark.parametrize("m,batches", [(8, [3, 3, 3, 3, 5]), (5, [5, 5, 2]), (7, [1, 6, 4, 9, 3]), (4, [10, 1, 3])])
def test_fifo_matches_list_reference(m: int, batches: list[int]) -> None:
    d = 6
    s, ref = SupportSet(m, d), ListFIFO(m)
    counter = 0
    for i, b in enumerate(batches):
        emb = _unit(b, d, seed=i)
        idx = torch.arange(counter, counter + b)
        lab = idx % 3
        s.enqueue(emb, idx, lab)
        ref.push([(emb[j], int(idx[j]), int(lab[j])) for j in range(b)])
        counter += b
        assert len(s) == ref.filled
        assert int(s.ptr) == ref.ptr and int(s.num_filled) == ref.filled
        for r, item in enumerate(ref.rows):
            if item is None:
                assert int(s.indices[r]) == -1 and int(s.labels[r]) == -1
            else:
                torch.testing.assert_close(s.embeddings[r], item[0])
                assert int(s.indices[r]) == item[1] and int(s.labels[r]) == item[2]


def test_batch_larger_than_capacity_keeps_newest_rows() -> None:
    s = SupportSet(4, 3)
    s.enqueue(_unit(2, 3, 0), torch.tensor([100, 101]))
    s.enqueue(_unit(10, 3, 1), torch.arange(10))
    assert len(s) == 4
    assert sorted(s.indices.tolist()) == [6, 7, 8, 9]
    # Oldest surviving row (6) sits at ptr: order preserved as if written one by one.
    assert int(s.indices[int(s.ptr)]) == 6


def test_enqueue_stores_detached_normalised_float32_and_unknown_meta() -> None:
    s = SupportSet(4, 3)
    x = torch.tensor([[3.0, 0.0, 4.0]], requires_grad=True)
    s.enqueue(x)
    assert s.embeddings.dtype == torch.float32 and not s.embeddings.requires_grad
    torch.testing.assert_close(s.embeddings[0], torch.tensor([0.6, 0.0, 0.8]))
    assert int(s.indices[0]) == -1 and int(s.labels[0]) == -1


def test_unwritten_rows_are_never_returned() -> None:
    # Written rows all point away from the query, so the zero (unwritten) rows would have
    # the highest similarity (0) if they were considered.
    s = SupportSet(10, 4)
    written = F.normalize(torch.tensor([[-1.0, 0.1, 0.0, 0.0], [-1.0, 0.0, 0.2, 0.0], [-1.0, 0.0, 0.0, 0.3]]), dim=1)
    s.enqueue(written)
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]])
    sims, rows = s.topk(q, 3)
    assert (rows < 3).all()
    assert (sims < 0).all()
    _, nrow = s.nearest(q)
    assert (nrow < 3).all()


def _brute_topk(q: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    sims, rows = [], []
    for qi in F.normalize(q, dim=1):
        scores = [(float(qi @ b), j) for j, b in enumerate(bank)]
        scores.sort(key=lambda t: -t[0])
        sims.append([s for s, _ in scores[:k]])
        rows.append([j for _, j in scores[:k]])
    return torch.tensor(sims), torch.tensor(rows)


@pytest.mark.parametrize("filled", [7, 50])
def test_topk_matches_brute_force_and_chunking(filled: int) -> None:
    d, m, k = 8, 64, 5
    s = SupportSet(m, d)
    s.enqueue(_unit(filled, d, 3))
    q = torch.randn(6, d, generator=torch.Generator().manual_seed(4)) * 3  # unnormalised query
    sims, rows = s.topk(q, k)
    ref_s, ref_r = _brute_topk(q, s.embeddings[:filled], k)
    assert torch.equal(rows, ref_r)
    torch.testing.assert_close(sims, ref_s)
    for chunk in (1, 3, 4, 16, 1000):
        cs, cr = s.topk(q, k, chunk_size=chunk)
        assert torch.equal(cr, rows), chunk
        torch.testing.assert_close(cs, sims)


def test_gather_labels_indices_of_rows() -> None:
    s = SupportSet(6, 4)
    emb = _unit(5, 4, 5)
    s.enqueue(emb, torch.tensor([10, 11, 12, 13, 14]), torch.tensor([0, 1, 2, 0, 1]))
    rows = torch.tensor([[4, 0], [2, 2]])
    assert s.gather(rows).shape == (2, 2, 4)
    torch.testing.assert_close(s.gather(rows)[0, 0], emb[4])
    assert s.labels_of(rows).tolist() == [[1, 0], [2, 2]]
    assert s.indices_of(rows).tolist() == [[14, 10], [12, 12]]


def test_k_larger_than_filled_raises() -> None:
    s = SupportSet(10, 4)
    s.enqueue(_unit(3, 4, 0))
    with pytest.raises(ValueError, match="top-4 .* holding 3 rows"):
        s.topk(_unit(2, 4, 1), 4)
    with pytest.raises(ValueError, match="holding 0 rows"):
        SupportSet(5, 4).nearest(_unit(1, 4, 1))


def test_bad_shapes_raise() -> None:
    s = SupportSet(10, 4)
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        s.enqueue(torch.randn(3, 5))
    with pytest.raises(ValueError, match="3 embeddings but 2"):
        s.enqueue(torch.randn(3, 4), torch.arange(2))
    with pytest.raises(ConfigError, match="size=0"):
        SupportSet(0, 4)


def test_bf16_query() -> None:
    s = SupportSet(16, 8)
    s.enqueue(_unit(16, 8, 0))
    q = _unit(4, 8, 1)
    sims, rows = s.topk(q.bfloat16(), 3)
    assert sims.dtype == torch.float32 and rows.dtype == torch.long
    ref_s, _ = s.topk(q, 3)
    torch.testing.assert_close(sims, ref_s, atol=2e-2, rtol=0)
    s.enqueue(_unit(2, 8, 2).bfloat16())
    assert s.embeddings.dtype == torch.float32


def test_capacity_capped_to_dataset_size_with_warning() -> None:
    with pytest.warns(UserWarning, match=r"size 1000 .*\(300 images\)"):
        s = SupportSet(1000, 4, dataset_size=300)
    assert s.capacity == 300
    assert SupportSet(100, 4, dataset_size=300).capacity == 100


def test_state_dict_round_trip_continues_identically(tmp_path) -> None:
    a = SupportSet(7, 5)
    for i in range(3):
        a.enqueue(_unit(3, 5, i), torch.arange(3) + 3 * i, torch.tensor([0, 1, -1]))
    path = tmp_path / "q.pt"
    torch.save({"support": a.state_dict()}, path)
    b = SupportSet(7, 5)
    b.load_state_dict(torch.load(path, weights_only=True)["support"])
    for name in ("embeddings", "indices", "labels", "ptr", "num_filled"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert len(b) == len(a) == 7
    nxt = _unit(4, 5, 9)
    a.enqueue(nxt, torch.arange(4) + 100)
    b.enqueue(nxt, torch.arange(4) + 100)
    assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.indices, b.indices)
    assert int(a.ptr) == int(b.ptr)
    q = _unit(3, 5, 11)
    assert torch.equal(a.topk(q, 4)[1], b.topk(q, 4)[1])


def test_load_state_dict_of_other_size_is_clear_error() -> None:
    a = SupportSet(7, 5)
    with pytest.raises(ConfigError, match="size=7, dim=5 but this one has size=8, dim=5"):
        SupportSet(8, 5).load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="dim=5 but this one has size=7, dim=6"):
        SupportSet(7, 6).load_state_dict(a.state_dict())


def test_reset_empties() -> None:
    s = SupportSet(4, 3)
    s.enqueue(_unit(3, 3, 0), torch.arange(3))
    s.reset()
    assert len(s) == 0 and int(s.ptr) == 0 and (s.indices == -1).all()
