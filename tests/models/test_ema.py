"""EMA target: exact initial copy, update formula, buffers copied, cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medssl.errors import ConfigError
from medssl.models.ema import EMATarget, cosine_momentum, ema_update


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_initial_copy_is_exact_and_frozen() -> None:
    online = _net()
    target = EMATarget(online)
    for (n, a), (_, b) in zip(online.state_dict().items(), target.module.state_dict().items()):
        assert torch.equal(a, b), n
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    # A copy, not shared storage.
    with torch.no_grad():
        online[0].weight.add_(1.0)
    assert not torch.equal(online[0].weight, target.module[0].weight)


def test_update_matches_manual_formula_and_copies_buffers() -> None:
    online = _net()
    target = EMATarget(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online.train()
    online(torch.randn(16, 4))  # changes BatchNorm running statistics
    before = {k: v.clone() for k, v in target.module.named_parameters()}
    m = 0.9
    target.update(online, m)
    for name, p in online.named_parameters():
        expected = m * before[name] + (1 - m) * p
        torch.testing.assert_close(dict(target.module.named_parameters())[name], expected)
    for name, b in online.named_buffers():
        assert torch.equal(dict(target.module.named_buffers())[name], b), name
    assert int(target.module[1].num_batches_tracked) == 1


def test_momentum_one_keeps_and_zero_copies() -> None:
    online = _net()
    target = EMATarget(online)
    with torch.no_grad():
        online[0].weight.mul_(2.0)
    old = target.module[0].weight.clone()
    ema_update(target.module, online, 1.0)
    assert torch.equal(target.module[0].weight, old)
    ema_update(target.module, online, 0.0)
    assert torch.equal(target.module[0].weight, online[0].weight)


def test_target_forward_has_no_grad() -> None:
    target = EMATarget(_net())
    out = target(torch.randn(4, 4))
    assert not out.requires_grad


def test_structure_mismatch_and_bad_momentum() -> None:
    with pytest.raises(ValueError, match="differ in structure"):
        ema_update(_net(), nn.Linear(4, 3), 0.9)
    with pytest.raises(ConfigError, match="momentum must be in"):
        ema_update(_net(), _net(), 1.5)


def test_cosine_schedule() -> None:
    T, base = 100, 0.99
    assert cosine_momentum(0, T, base) == pytest.approx(base)
    assert cosine_momentum(T, T, base) == pytest.approx(1.0)
    assert cosine_momentum(T // 2, T, base) == pytest.approx((base + 1) / 2)
    values = [cosine_momentum(s, T, base) for s in range(T + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert cosine_momentum(T + 50, T, base) == pytest.approx(1.0)  # clamped
    assert cosine_momentum(10, T, 0.996) == pytest.approx(1 - 0.004 * (math.cos(math.pi * 0.1) + 1) / 2)
    with pytest.raises(ConfigError, match="total_steps"):
        cosine_momentum(0, 0)
    with pytest.raises(ConfigError, match="base momentum"):
        cosine_momentum(0, 10, base=1.2)
