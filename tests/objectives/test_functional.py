import math

import torch

from medssl.objectives.functional import ce_rows, entropy, mean_over_neighbours, nt_xent, soft_ce
from objective_helpers import ce_row_ref, ce_rows_ref, unit


def test_ce_rows_matches_loop():
    a, b = unit(5, 8, 0), unit(5, 8, 1)
    assert math.isclose(float(ce_rows(a @ b.t() / 0.1)), ce_rows_ref(a, b, 0.1), rel_tol=1e-10)


def test_ce_rows_is_low_when_diagonal_dominates():
    s = torch.full((4, 4), -10.0, dtype=torch.float64)
    s.fill_diagonal_(10.0)
    assert float(ce_rows(s)) < 1e-6
    assert float(ce_rows(-s)) > 19.0


def test_nt_xent_matches_loop():
    z1, z2 = unit(4, 8, 2), unit(4, 8, 3)
    tau, b = 0.1, 4
    z = torch.cat([z1, z2])
    total = 0.0
    for i in range(2 * b):
        others = [j for j in range(2 * b) if j != i]
        scores = [float(z[i] @ z[j]) / tau for j in others]
        pos = others.index((i + b) % (2 * b))
        total += ce_row_ref(scores, pos)
    assert math.isclose(float(nt_xent(z1, z2, tau)), total / (2 * b), rel_tol=1e-10)


def test_soft_ce_matches_loop_with_mask():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, generator=g, dtype=torch.float64)
    w = torch.rand(3, 5, generator=g, dtype=torch.float64)
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[:, 4] = False
    w[:, 4] = 0.0
    out = soft_ce(logits, w, valid)
    for i in range(3):
        scores = [float(logits[i, j]) for j in range(4)]
        ref = sum(float(w[i, j]) * ce_row_ref(scores, j) for j in range(4))
        assert math.isclose(float(out[i]), ref, rel_tol=1e-10)
    assert torch.isfinite(out).all()


def test_mean_over_neighbours_averages_slots():
    p = unit(4, 6, 0)
    nbrs = torch.stack([unit(4, 6, 1), unit(4, 6, 2)], dim=1)
    fn = lambda n, q: ce_rows(n @ q.t())  # noqa: E731
    assert torch.equal(mean_over_neighbours(fn, nbrs[:, 0], p), fn(nbrs[:, 0], p))
    expected = 0.5 * (fn(nbrs[:, 0], p) + fn(nbrs[:, 1], p))
    assert torch.allclose(mean_over_neighbours(fn, nbrs, p), expected)


def test_entropy_of_uniform_and_one_hot():
    assert math.isclose(float(entropy(torch.full((5,), 0.2))), math.log(5), rel_tol=1e-6)
    assert float(entropy(torch.tensor([1.0, 0.0, 0.0]))) < 1e-9
