"""Neighbour selection: pNN geometry, noise scale, gradient paths, selectors, diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medssl.errors import ConfigError, RegistryError
from medssl.objectives.neighbours import (
    Neighbours,
    NNSelector,
    PseudoNNSelector,
    TopKSelector,
    build_selector,
    neighbour_diagnostics,
    pseudo_neighbour,
    select_neighbours,
)
from medssl.objectives.support_set import SupportSet
from medssl.registry import NEIGHBOURS


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def _support(n: int = 20, d: int = 8, seed: int = 0) -> SupportSet:
    s = SupportSet(32, d)
    s.enqueue(_unit(n, d, seed), torch.arange(n), torch.arange(n) % 2)
    return s


def test_alpha_endpoints_without_noise() -> None:
    u, nn = _unit(4, 8, 1), _unit(4, 8, 2)
    torch.testing.assert_close(pseudo_neighbour(u, nn, alpha=1.0, beta=0.0), u)
    torch.testing.assert_close(pseudo_neighbour(u, nn, alpha=0.0, beta=0.0), nn)
    torch.testing.assert_close(pseudo_neighbour(u, nn, alpha=0.25, beta=0.0), 0.25 * u + 0.75 * nn)
    # noise=False gives u'' whatever beta is
    torch.testing.assert_close(pseudo_neighbour(u, nn, alpha=0.25, beta=0.5, noise=False), 0.25 * u + 0.75 * nn)


def test_noise_std_is_beta_times_distance_per_row() -> None:
    # Rows at very different distances from their neighbour: the per-row noise std must
    # follow each row's own ||u - u''||. With N = 200 draws x D = 64 dims = 12800 samples
    # per row, the sample std has relative standard error 1/sqrt(2*12800) ~ 0.6%; a 3%
    # tolerance is ~5 standard errors.
    d, n_draws, alpha, beta = 64, 200, 0.25, 0.1
    u = _unit(3, d, 3)
    nn = torch.stack([u[0], F.normalize(u[1] + 0.2 * _unit(1, d, 4)[0], dim=0), -u[2]])
    u_rep, nn_rep = u.repeat(n_draws, 1), nn.repeat(n_draws, 1)
    g = torch.Generator().manual_seed(0)
    out = pseudo_neighbour(u_rep, nn_rep, alpha, beta, generator=g)
    mid = pseudo_neighbour(u_rep, nn_rep, alpha, beta, noise=False)
    noise = (out - mid).reshape(n_draws, 3, d)
    expected = beta * (1 - alpha) * (u - nn).norm(dim=1)
    assert expected[0] == 0 and torch.allclose(noise[:, 0], torch.zeros(n_draws, d))
    measured = noise[:, 1:].permute(1, 0, 2).reshape(2, -1).std(dim=1)
    torch.testing.assert_close(measured, expected[1:], rtol=0.03, atol=0)


def test_generator_makes_noise_reproducible_and_3d_neighbours() -> None:
    u, nn = _unit(4, 8, 1), torch.stack([_unit(4, 8, 2), _unit(4, 8, 3)], dim=1)
    a = pseudo_neighbour(u, nn, 0.25, 0.1, generator=torch.Generator().manual_seed(5))
    b = pseudo_neighbour(u, nn, 0.25, 0.1, generator=torch.Generator().manual_seed(5))
    assert a.shape == (4, 2, 8) and torch.equal(a, b)
    torch.testing.assert_close(pseudo_neighbour(u, nn, 0.0, 0.0), nn)


def test_gradient_flows_to_query_only() -> None:
    u = _unit(4, 8, 1).requires_grad_()
    nn = _unit(4, 8, 2).requires_grad_()
    out = pseudo_neighbour(u, nn.detach(), alpha=0.25, beta=0.1, generator=torch.Generator().manual_seed(0))
    out.sum().backward()
    assert nn.grad is None
    # d(sum u')/du = alpha (sigma is detached, so the noise adds nothing)
    torch.testing.assert_close(u.grad, torch.full_like(u, 0.25))


def test_renormalize_gives_unit_rows() -> None:
    out = pseudo_neighbour(_unit(5, 8, 1), _unit(5, 8, 2), 0.5, 0.1, renormalize=True)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("alpha,beta,msg", [(1.5, 0.1, "alpha must be in"), (-0.1, 0.1, "alpha"), (0.5, -1.0, "beta")])
def test_bad_alpha_beta(alpha: float, beta: float, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        pseudo_neighbour(_unit(2, 4, 0), _unit(2, 4, 1), alpha, beta)
    with pytest.raises(ConfigError, match=msg):
        PseudoNNSelector(alpha=alpha, beta=beta)


def test_nn_and_topk_selectors() -> None:
    s = _support()
    q = _unit(5, 8, 7)
    sims, rows = s.topk(q, 3)
    nb = NNSelector()(q, s, training=True)
    assert isinstance(nb, Neighbours) and nb.embeddings.shape == (5, 1, 8)
    assert torch.equal(nb.rows[:, 0], rows[:, 0])
    torch.testing.assert_close(nb.first, s.embeddings[rows[:, 0]])
    tk = TopKSelector(3)(q, s, training=False)
    assert tk.k == 3 and torch.equal(tk.rows, rows) and torch.equal(tk.sims, sims)
    emb, r, _ = select_neighbours(q, s, 3)
    torch.testing.assert_close(emb, s.embeddings[rows])


def test_pnn_selector_training_eval_and_grad() -> None:
    s = _support()
    q = _unit(5, 8, 7).requires_grad_()
    sel = PseudoNNSelector(k=2, alpha=0.25, beta=0.1)
    nb_eval = sel(q, s, training=False)
    nbr = s.gather(s.topk(q, 2)[1])
    torch.testing.assert_close(nb_eval.embeddings, 0.25 * q.detach()[:, None] + 0.75 * nbr)
    nb_train = sel(q, s, training=True, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(nb_train.embeddings, nb_eval.embeddings)
    assert nb_train.embeddings.requires_grad
    nb_train.embeddings.sum().backward()
    torch.testing.assert_close(q.grad, torch.full_like(q, 2 * 0.25))  # K = 2 neighbours
    detached = PseudoNNSelector(k=2, pnn_grad=False)(q, s, training=True)
    assert not detached.embeddings.requires_grad


def test_pnn_with_zero_alpha_beta_is_plain_nn() -> None:
    s, q = _support(), _unit(5, 8, 7)
    a = PseudoNNSelector(alpha=0.0, beta=0.0)(q, s, training=True)
    b = NNSelector()(q, s, training=True)
    torch.testing.assert_close(a.embeddings, b.embeddings)


def test_registry_and_build_selector() -> None:
    assert {"nn", "pnn", "topk"} <= set(NEIGHBOURS.names())
    sel = build_selector("pnn", k=3, alpha=0.5)
    assert isinstance(sel, PseudoNNSelector) and sel.k == 3 and sel.alpha == 0.5
    assert isinstance(NEIGHBOURS.build({"name": "topk", "k": 4}), TopKSelector)
    with pytest.raises(ConfigError, match=r"unknown key 'alpah' in neighbour 'pnn'\. Did you mean 'alpha'"):
        build_selector("pnn", alpah=0.5)
    with pytest.raises(RegistryError, match="unknown neighbour 'pn'"):
        build_selector("pn")
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        TopKSelector(0)


def test_diagnostics_hand_built() -> None:
    s = SupportSet(6, 2)
    s.enqueue(_unit(5, 2, 0), torch.tensor([10, 11, 12, 13, -1]), torch.tensor([0, 1, 0, -1, 1]))
    rows = torch.tensor([[0, 1], [2, 3], [4, 0]])
    qlab = torch.tensor([0, 0, -1])
    qidx = torch.tensor([10, 12, 99])
    d = neighbour_diagnostics(rows, s, qlab, qidx)
    # known label pairs: (0,0)=match, (0,1)=miss, (0,0)=match; row 3 unlabelled; query 2 unlabelled
    assert d["nn_purity"] == pytest.approx(2 / 3)
    # known stored indices: rows 0,1,2,3,0 (row 4 has -1); same image: q0-row0, q1-row2
    assert d["nn_same_image"] == pytest.approx(2 / 5)
    w = torch.tensor([[1.0, 3.0], [1.0, 5.0], [1.0, 1.0]])
    dw = neighbour_diagnostics(rows, s, qlab, qidx, weights=w)
    assert dw["nn_purity_weighted"] == pytest.approx((1 + 1) / (1 + 3 + 1))


def test_diagnostics_omit_keys_without_pairs() -> None:
    s = SupportSet(4, 2)
    s.enqueue(_unit(3, 2, 0))  # no labels, no indices
    d = neighbour_diagnostics(torch.tensor([[0], [1]]), s, torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert d == {}
    assert all(not math.isnan(v) for v in d.values())
    assert neighbour_diagnostics(torch.tensor([[0]]), s) == {}
