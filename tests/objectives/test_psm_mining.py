import pytest
import torch

from medssl.objectives.psm import PSM, psm_view_loss
from medssl.objectives.psm_mining import mine_negatives, nothing_mined, sample_negatives_band
from objective_helpers import unit


def test_mine_negatives_excludes_mined_rows_and_dispatches_on_the_sampler():
    p, t, queue = unit(3, 8, 0), unit(3, 8, 1), unit(10, 8, 2)
    rows = torch.tensor([[0, 1], [2, 3], [4, 5]])
    idx, valid = mine_negatives(p, t, queue, rows, sampler="band", band_drop=1, n_neg=20)
    eligible = torch.ones(3, 10, dtype=torch.bool).scatter_(1, rows, False)
    ref_idx, ref_valid = sample_negatives_band((p @ queue.t()).float(), eligible, drop=1, keep=20)
    assert torch.equal(idx, ref_idx) and torch.equal(valid, ref_valid)
    for b in range(3):  # 8 eligible rows, the most similar dropped: 7 kept, no mined row
        kept = set(idx[b][valid[b]].tolist())
        assert len(kept) == 7 and kept.isdisjoint(rows[b].tolist())


def test_gaussian_mining_is_reproducible_from_its_generator():
    p, t, queue = unit(4, 8, 0), unit(4, 8, 1), unit(30, 8, 2)
    rows = torch.zeros(4, 1, dtype=torch.long)
    draws = [mine_negatives(p, t, queue, rows, a=0.5, n_neg=5, generator=torch.Generator().manual_seed(3))
             for _ in range(2)]
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert draws[0][0].shape == (4, 5)


def test_nothing_mined_gives_the_cold_start_loss():
    p, t = unit(5, 8, 0), unit(5, 8, 1)
    empty = nothing_mined(t)
    assert [tuple(x.shape) for x in empty] == [(5, 0, 8), (5, 0), (0, 8), (5, 0), (5, 0)]
    assert empty[3].dtype == torch.long and empty[4].dtype == torch.bool
    loss, hard, soft = psm_view_loss(p, t, *empty, tau=0.2)
    assert float(soft) == 0.0
    assert float(hard) == pytest.approx(float(torch.nn.functional.cross_entropy(p @ t.t() / 0.2, torch.arange(5))))


def test_psm_keeps_its_public_names():
    # The mechanisms were first published from medssl.objectives.psm.
    from medssl.objectives import psm, psm_mining

    for name in ("soft_positive_weights", "band_probability", "sample_negatives_gaussian", "sample_negatives_band"):
        assert getattr(psm, name) is getattr(psm_mining, name)
    assert PSM(sampler="band").sampler == "band"
