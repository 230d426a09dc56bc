import math

import pytest
import torch

from medssl.errors import ConfigError
from medssl.objectives.neighbours import PseudoNNSelector
from medssl.objectives.pnnclr import PNNCLR, pnnclr_c, pnnclr_loss
from medssl.registry import OBJECTIVES
from objective_helpers import ce_rows_ref, filled_support, outputs, stored, unit


def _loop_c(p, t, a, b, tau):
    """C(p, t) with a = pNN(p), b = pNN(t), every CE_rows by explicit loops."""
    return 0.25 * (ce_rows_ref(a, t, tau) + ce_rows_ref(t, a, tau) + ce_rows_ref(b, p, tau) + ce_rows_ref(p, b, tau))


def test_pnnclr_loss_matches_loop():
    p1, p2, t1, t2, a1, a2, b1, b2 = (unit(5, 8, s) for s in range(8))
    ref = 0.5 * (_loop_c(p1, t2, a1, b2, 0.1) + _loop_c(p2, t1, a2, b1, 0.1))
    assert math.isclose(float(pnnclr_loss(p1, p2, t1, t2, a1, a2, b1, b2, 0.1)), ref, rel_tol=1e-10)


def test_c_averages_over_k_slots():
    p, t = unit(4, 8, 0), unit(4, 8, 1)
    a = torch.stack([unit(4, 8, 2), unit(4, 8, 3)], 1)
    b = torch.stack([unit(4, 8, 4), unit(4, 8, 5)], 1)
    ref = 0.5 * (_loop_c(p, t, a[:, 0], b[:, 0], 0.2) + _loop_c(p, t, a[:, 1], b[:, 1], 0.2))
    assert math.isclose(float(pnnclr_c(p, t, a, b, 0.2)), ref, rel_tol=1e-10)


def _float(out):
    for f in ("z", "p", "t"):
        setattr(out, f, [v.detach().float().requires_grad_(True) for v in getattr(out, f)])
    return out


def _manual_pnn(u, bank, alpha):
    nn = bank[(u @ bank.t()).argmax(1)]
    return u + (1 - alpha) * (nn - u)


def test_forward_eval_matches_pseudo_neighbours_from_preexisting_rows():
    out = _float(outputs(b=6, d=8))
    support = filled_support(12, 8, size=40)
    bank = stored(support).clone()
    obj = PNNCLR(alpha=0.3).eval()  # eval: no noise
    loss, diag = obj(out, support)
    p1, p2 = (v.detach().double() for v in out.p)
    t1, t2 = (v.detach().double() for v in out.t)
    ref = 0.5 * (_loop_c(p1, t2, _manual_pnn(p1, bank, 0.3), _manual_pnn(t2, bank, 0.3), 0.1)
                 + _loop_c(p2, t1, _manual_pnn(p2, bank, 0.3), _manual_pnn(t1, bank, 0.3), 0.1))
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    # t1 (target projections of view 1) is what was enqueued, after the look-ups.
    assert len(support) == 18
    assert torch.allclose(support.embeddings[12:18], out.t[0].detach(), atol=1e-6)
    assert diag["nn_same_image"] == 0.0  # enqueued after the look-ups: no self-hits
    assert diag["cold_start"] == 0.0 and {"loss_c12", "loss_c21", "emb_std", "nn_purity", "nn_same_image"} <= set(diag)


def test_queue_source_online_stores_p1():
    out = _float(outputs(b=4, d=8))
    support = filled_support(4, 8, size=16)
    PNNCLR(queue_source="online")(out, support)
    assert torch.allclose(support.embeddings[4:8], out.p[0].detach(), atol=1e-6)


def test_alpha_beta_zero_is_plain_nn():
    out = _float(outputs(b=5, d=8))
    support = filled_support(9, 8, size=20)
    bank = stored(support).clone()
    loss, _ = PNNCLR(alpha=0.0, beta=0.0).train()(out, support)
    p1, p2 = (v.detach().double() for v in out.p)
    t1, t2 = (v.detach().double() for v in out.t)
    nn = lambda u: bank[(u @ bank.t()).argmax(1)]  # noqa: E731
    ref = 0.5 * (_loop_c(p1, t2, nn(p1), nn(t2), 0.1) + _loop_c(p2, t1, nn(p2), nn(t1), 0.1))
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_noise_is_seeded_and_only_in_training():
    def run(seed, train=True, gen=None):
        support = filled_support(10, 8, size=30)
        obj = PNNCLR(seed=seed).train(train)
        return obj(_float(outputs(b=5, d=8)), support, generator=gen)[0].item()

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert run(1, train=False) == run(2, train=False)
    assert run(None, gen=torch.Generator().manual_seed(3)) == run(None, gen=torch.Generator().manual_seed(3))


def test_gradient_paths():
    def grads(pnn_grad):
        out = _float(outputs(b=5, d=8, t_grad=True))
        support = filled_support(10, 8, size=30)
        loss, _ = PNNCLR(pnn_grad=pnn_grad).eval()(out, support)
        loss.backward()
        assert out.t[0].grad is None and out.t[1].grad is None  # target: no gradient
        assert not support.embeddings.requires_grad
        return out.p[0].grad.clone()

    g_on, g_off = grads(True), grads(False)
    assert g_on.abs().sum() > 0 and g_off.abs().sum() > 0
    assert not torch.allclose(g_on, g_off)  # the alpha*p path of pNN(p) contributes

    # pnn_grad=False equals the loss with the pseudo neighbours detached by hand.
    out = _float(outputs(b=5, d=8))
    support = filled_support(10, 8, size=30)
    bank = support.embeddings[:10].clone()
    pn = lambda u: _manual_pnn(u, bank, 0.25).detach()  # noqa: E731
    p1, p2 = out.p
    t1, t2 = (t.detach() for t in out.t)
    pnnclr_loss(p1, p2, t1, t2, pn(p1), pn(p2), pn(t1), pn(t2), 0.1).backward()
    assert torch.allclose(out.p[0].grad, g_off, atol=1e-5)


def test_cold_start_uses_detached_query():
    out = _float(outputs(b=4, d=8))
    from medssl.objectives.support_set import SupportSet

    support = SupportSet(16, 8)
    loss, diag = PNNCLR()(out, support)
    p1, p2 = out.p
    t1, t2 = out.t
    ref = pnnclr_loss(p1, p2, t1, t2, p1.detach(), p2.detach(), t1.detach(), t2.detach(), 0.1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert diag["cold_start"] == 1.0 and len(support) == 4


def test_ablations_reachable_from_config():
    swu = OBJECTIVES.build({"name": "pnnclr", "alpha": 0.0, "beta": 0.0})
    swu_pnn = OBJECTIVES.build({"name": "pnnclr", "beta": 0.0})
    full = OBJECTIVES.build({"name": "pnnclr"})
    assert (swu.selector.alpha, swu.selector.beta) == (0.0, 0.0)
    assert (swu_pnn.selector.alpha, swu_pnn.selector.beta) == (0.25, 0.0)
    assert isinstance(full.selector, PseudoNNSelector)
    assert (full.selector.alpha, full.selector.beta, full.selector.renormalize, full.selector.pnn_grad) == (
        0.25, 0.10, False, True)
    assert full.tau == 0.1 and full.queue_source == "target"
    assert PNNCLR.requirements.target and PNNCLR.requirements.predictor and PNNCLR.requirements.support_set


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"tau": -1}, "tau must be > 0, got -1"),
        ({"alpha": 1.5}, r"alpha must be in \[0.0, 1.0\], got 1.5"),
        ({"beta": -0.1}, "beta must be >= 0.0, got -0.1"),
        ({"queue_source": "predictions"}, "queue_source must be one of target, online, got 'predictions'"),
        ({"neighbours": "knn"}, "unknown neighbour 'knn'"),
        ({"pnn_grad": "yes"}, "pnn_grad must be true or false"),
    ],
)
def test_config_errors(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        PNNCLR(**kwargs)
