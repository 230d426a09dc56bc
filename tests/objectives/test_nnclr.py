import math

import pytest
import torch

from medssl.errors import ConfigError
from medssl.objectives.nnclr import NNCLR, nnclr_loss
from medssl.objectives.neighbours import TopKSelector
from medssl.objectives.support_set import SupportSet
from objective_helpers import ce_rows_ref, filled_support, outputs, stored, unit


def _loop_nnclr(p1, p2, nn1, nn2, tau):
    return 0.5 * (ce_rows_ref(nn1, p2, tau) + ce_rows_ref(nn2, p1, tau))


def test_nnclr_loss_matches_loop():
    p1, p2, n1, n2 = (unit(5, 8, s) for s in range(4))
    assert math.isclose(float(nnclr_loss(p1, p2, n1, n2, 0.1)), _loop_nnclr(p1, p2, n1, n2, 0.1), rel_tol=1e-10)


def test_nnclr_loss_averages_k_neighbour_slots():
    p1, p2 = unit(4, 8, 0), unit(4, 8, 1)
    n1 = torch.stack([unit(4, 8, 2), unit(4, 8, 3)], 1)
    n2 = torch.stack([unit(4, 8, 4), unit(4, 8, 5)], 1)
    ref = 0.5 * sum(_loop_nnclr(p1, p2, n1[:, k], n2[:, k], 0.1) for k in range(2))
    assert math.isclose(float(nnclr_loss(p1, p2, n1, n2, 0.1)), ref, rel_tol=1e-10)


def test_no_gradient_into_neighbours():
    p1, p2 = unit(4, 8, 0, grad=True), unit(4, 8, 1, grad=True)
    n1, n2 = unit(4, 8, 2, grad=True), unit(4, 8, 3, grad=True)
    nnclr_loss(p1, p2, n1, n2).backward()
    assert n1.grad is None and n2.grad is None
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


def _float(out):
    for f in ("z", "p", "t"):
        setattr(out, f, [v.detach().float().requires_grad_(True) for v in getattr(out, f)])
    return out


def test_forward_looks_up_before_enqueue_and_stores_z1():
    out = _float(outputs(b=6, d=8))
    support = filled_support(10, 8, size=32)
    bank = stored(support).clone()
    obj = NNCLR(tau=0.1)
    loss, diag = obj(out, support)
    # Reference: nearest rows among the 10 pre-existing rows only (never this step's z1).
    z1, z2 = (z.detach().double() for z in out.z)
    nn1, nn2 = bank[(z1 @ bank.t()).argmax(1)], bank[(z2 @ bank.t()).argmax(1)]
    ref = _loop_nnclr(out.p[0].double(), out.p[1].double(), nn1, nn2, 0.1)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    assert len(support) == 16
    assert torch.allclose(support.embeddings[10:16], out.z[0].detach(), atol=1e-6)
    assert torch.equal(support.indices[10:16], out.indices)
    assert diag["nn_same_image"] == 0.0  # enqueued after the look-ups: no self-hits
    assert diag["cold_start"] == 0.0 and 0.0 <= diag["nn_purity"] <= 1.0 and "nn_same_image" in diag
    loss.backward()
    assert out.z[0].grad is None  # z reaches the loss only through the stop-gradient neighbour
    assert not support.embeddings.requires_grad


def test_cold_start_uses_query_as_its_own_neighbour():
    out = _float(outputs(b=5, d=8))
    support = SupportSet(16, 8)
    loss, diag = NNCLR()(out, support)
    ref = nnclr_loss(out.p[0], out.p[1], out.z[0], out.z[1], 0.1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert diag["cold_start"] == 1.0 and "nn_purity" not in diag
    assert len(support) == 5


def test_topk_selector_composes():
    obj = NNCLR(neighbours={"name": "topk", "k": 3})
    assert isinstance(obj.selector, TopKSelector) and obj.selector.k == 3
    out = _float(outputs(b=4, d=8))
    support = filled_support(2, 8, size=16)
    _, diag = obj(out, support)  # 2 rows < k = 3: cold start
    assert diag["cold_start"] == 1.0
    _, diag = obj(_float(outputs(b=4, d=8, seed=5)), support)
    assert diag["cold_start"] == 0.0


def test_needs_support_set():
    with pytest.raises(ConfigError, match="needs a support set"):
        NNCLR()(_float(outputs()), None)


def test_config_errors():
    with pytest.raises(ConfigError, match="tau must be > 0, got 0"):
        NNCLR(tau=0)
    with pytest.raises(ConfigError, match="unknown neighbour 'nearest'"):
        NNCLR(neighbours="nearest")
    with pytest.raises(ConfigError, match="'kk'"):
        NNCLR(neighbours={"name": "topk", "kk": 3})
