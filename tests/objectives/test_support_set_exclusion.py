"""``support_set.exclude_same_image`` / ``exclude_same_slide``: a look-up never returns a
row of the query's own image (or slide), checked against a naive per-query loop, for the
support set itself and for every neighbour objective (NNCLR, pNNCLR, SNCLR, PSM)."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
import torch
import torch.nn.functional as F

from medssl.models.outputs import ViewOutputs
from medssl.objectives.neighbours import Neighbours
from medssl.objectives.psm_mining import mine_negatives
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES
from objective_helpers import unit

D = 8


def _queue(m: int, indices: torch.Tensor, seed: int = 5, **kw) -> SupportSet:
    s = SupportSet(m, D, **kw)
    s.enqueue(unit(m, D, seed, dtype=torch.float32), indices=indices, labels=indices % 3)
    return s


def naive_topk(support: SupportSet, query: torch.Tensor, k: int, keys: Optional[List[int]],
               groups: Optional[List[int]] = None) -> Tuple[torch.Tensor, torch.Tensor, List[bool]]:
    """Per query: every written row's cosine by a Python loop, the query's own image (or
    group) ranked after all others; the top ``k``; whether the overall nearest was excluded."""
    q = F.normalize(query.float(), dim=1)
    key_of = (lambda i: -1 if i < 0 else groups[i]) if groups is not None else (lambda i: i)
    out_s, out_r, displaced = [], [], []
    for b in range(q.shape[0]):
        cands = []
        for r in range(len(support)):
            sim = float(q[b] @ support.embeddings[r])
            mine = keys is not None and keys[b] >= 0 and key_of(int(support.indices[r])) == key_of(keys[b])
            cands.append((mine, -sim, r, sim))
        nearest = min(cands, key=lambda c: c[1])
        displaced.append(bool(nearest[0]))
        chosen = sorted(cands)[:k]
        out_r.append([c[2] for c in chosen])
        out_s.append([c[3] for c in chosen])
    return torch.tensor(out_s), torch.tensor(out_r), displaced


@pytest.mark.parametrize("chunk", [None, 3, 7])
def test_topk_excluding_matches_the_naive_loop(chunk: Optional[int]) -> None:
    # 20 rows of 6 images (several older copies each, and one row of unknown index)
    idx = torch.tensor([i % 6 for i in range(19)] + [-1])
    s = _queue(20, idx)
    near_copies = s.embeddings[[0, 7, 13]] + 0.01 * unit(3, D, 1, dtype=torch.float32)
    q = torch.cat([near_copies, unit(2, D, 2, dtype=torch.float32)])
    keys = [0, 1, 1, -1, 5]
    sims, rows, displaced = s.topk_excluding(q, 4, torch.tensor(keys), chunk_size=chunk)
    ref_s, ref_r, ref_d = naive_topk(s, q, 4, keys)
    assert torch.equal(rows, ref_r)
    torch.testing.assert_close(sims, ref_s, atol=1e-5, rtol=0)
    assert displaced is not None and displaced.tolist() == ref_d
    assert ref_d[:3] == [True, True, True]  # the copies were the nearest rows before exclusion
    assert not (s.indices[rows[:3]] == torch.tensor(keys[:3])[:, None]).any()


def test_an_excluded_row_comes_only_when_fewer_than_k_others_exist() -> None:
    s = _queue(4, torch.tensor([0, 0, 0, 1]))
    sims, rows, _ = s.topk_excluding(unit(1, D, 3, dtype=torch.float32), 3, torch.tensor([0]))
    assert rows[0, 0] == 3  # the one other image first, then the best own-image rows
    ref_s, ref_r, _ = naive_topk(s, unit(1, D, 3, dtype=torch.float32), 3, [0])
    assert torch.equal(rows, ref_r)
    torch.testing.assert_close(sims, ref_s, atol=1e-5, rtol=0)  # true cosines, not penalised


def test_exclusion_off_or_no_indices_is_plain_topk() -> None:
    idx = torch.arange(10) % 4
    q = unit(5, D, 4, dtype=torch.float32)
    plain = _queue(10, idx).topk(q, 3)
    off = _queue(10, idx, exclude_same_image=False).topk_excluding(q, 3, torch.arange(5))
    none = _queue(10, idx).topk_excluding(q, 3, None)
    for got in (off, none):
        assert torch.equal(got[1], plain[1]) and torch.equal(got[0], plain[0]) and got[2] is None


def test_same_slide_exclusion_uses_the_groups() -> None:
    groups = [0, 0, 1, 1, 2, 2, 3, 3]  # image -> slide
    idx = torch.arange(16) % 8
    s = _queue(16, idx, exclusion_groups=torch.tensor(groups))
    q = unit(4, D, 6, dtype=torch.float32)
    keys = [0, 3, 5, 7]
    sims, rows, displaced = s.topk_excluding(q, 5, torch.tensor(keys))
    ref_s, ref_r, ref_d = naive_topk(s, q, 5, keys, groups)
    assert torch.equal(rows, ref_r) and displaced is not None and displaced.tolist() == ref_d
    slide_of = torch.tensor(groups)
    assert not (slide_of[s.indices[rows]] == slide_of[torch.tensor(keys)][:, None]).any()


def test_groups_are_not_saved_in_the_state_dict() -> None:
    s = _queue(8, torch.arange(8), exclusion_groups=torch.zeros(8, dtype=torch.long))
    assert "exclusion_groups" not in s.state_dict()
    fresh = SupportSet(8, D)
    fresh.load_state_dict(s.state_dict())
    assert torch.equal(fresh.embeddings, s.embeddings)


def test_psm_negatives_leave_out_the_excluded_rows() -> None:
    queue = unit(12, D, 8, dtype=torch.float32)
    p, t = unit(3, D, 9, dtype=torch.float32), unit(3, D, 10, dtype=torch.float32)
    excluded = torch.zeros(3, 12, dtype=torch.bool)
    excluded[0, [1, 2]] = excluded[2, 5] = True
    mined = torch.tensor([[0], [3], [4]])
    idx, valid = mine_negatives(p, t, queue, mined, sampler="band", band_drop=0, n_neg=12, excluded=excluded)
    for b in range(3):
        kept = set(idx[b][valid[b]].tolist())
        assert kept == set(range(12)) - set(mined[b].tolist()) - set(excluded[b].nonzero().flatten().tolist())


# ----------------------------------------------------------------------------- every objective
B = 4
OPTIONS = {"nnclr": {}, "pnnclr": {"beta": 0.0}, "snclr": {"k": 3, "dim": D, "attention": "cosine"},
           "psm": {"k": 3, "sampler": "band", "band_drop": 0, "n_neg": 32}}


def _outputs() -> ViewOutputs:
    vs = [unit(B, D, s, dtype=torch.float64) for s in range(6)]
    return ViewOutputs(z=vs[0:2], p=vs[2:4], t=vs[4:6], indices=torch.arange(B) + 100, labels=torch.arange(B) % 3)


def _support_with_copies(out: ViewOutputs, exclude: bool) -> SupportSet:
    """12 unrelated rows plus an older copy of every view of the batch's images, stored
    under the batch's indices: without exclusion those copies are the nearest rows."""
    s = SupportSet(12 + 6 * B, D, exclude_same_image=exclude)
    s.enqueue(unit(12, D, 20, dtype=torch.float32), indices=torch.arange(12), labels=torch.arange(12) % 3)
    for views in (out.z, out.p, out.t):
        for v in views:
            s.enqueue(v.detach().float(), indices=out.indices, labels=out.labels)
    return s


def _clone(s: SupportSet) -> SupportSet:
    c = SupportSet(s.capacity, D, exclude_same_image=s.exclude_same_image)
    c.load_state_dict(s.state_dict())
    return c


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_objective_looks_up_as_the_naive_loop_and_never_its_own_image(name: str) -> None:
    out = _outputs()
    obj = OBJECTIVES.build({"name": name, "seed": 1, **OPTIONS[name]}).double()
    support = _support_with_copies(out, exclude=True)
    ref_support = _clone(support)
    loss, diag = obj(out, support)
    assert diag["cold_start"] == 0.0
    assert diag["nn_same_image"] == 0.0
    assert diag["nn_same_image_excluded"] == 1.0  # every query's nearest row was its own copy
    # the reference: the objective's own maths on neighbours found by the naive loop
    v = obj.views(out)
    query = obj.query(v)
    k = obj.requirements.neighbours_per_query
    keys = (out.indices.tolist()) * (query.shape[0] // B)
    sims, rows, _ = naive_topk(ref_support, query, k, keys)
    emb = ref_support.gather(rows).to(query.dtype)
    if name == "pnnclr":  # pseudo neighbours, noise off: u + (1 - alpha)(NN(u) - u)
        emb = query.unsqueeze(1) + (1 - obj.alpha) * (emb - query.unsqueeze(1))
    gen = obj.generators.get(query.device, None)
    terms = obj.terms(v, Neighbours(emb, rows, sims), query, ref_support, gen)
    assert float(loss) == pytest.approx(float(terms.loss), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_without_exclusion_the_old_copies_are_found(name: str) -> None:
    out = _outputs()
    obj = OBJECTIVES.build({"name": name, "seed": 1, **OPTIONS[name]}).double()
    _, diag = obj(out, _support_with_copies(out, exclude=False))
    assert diag["nn_same_image"] > 0.3 and "nn_same_image_excluded" not in diag
