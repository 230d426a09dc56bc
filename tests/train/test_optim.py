from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medssl.errors import ConfigError
from medssl.train.optim import LARS, build_optimizer, build_scheduler, param_groups, warmup_cosine


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_param_groups_split_matrices_from_vectors() -> None:
    net = _net()
    decay, no_decay = param_groups([net, net], weight_decay=0.1)  # shared module counted once
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 4]), torch.Size([2, 3])]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"]


def test_lars_step_matches_manual_update() -> None:
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
               lr=0.1, momentum=0.9, weight_decay=0.01, eta=0.02)
    w.grad = torch.tensor([[0.0, 1.0]])
    b.grad = torch.tensor([2.0])
    g = torch.tensor([[0.0, 1.0]]) + 0.01 * torch.tensor([[3.0, 4.0]])
    trust = 0.02 * 5.0 / torch.linalg.vector_norm(g)
    expect_w = torch.tensor([[3.0, 4.0]]) - 0.1 * trust * g
    opt.step()
    assert torch.allclose(w.detach(), expect_w, atol=1e-6)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))
    # second step uses momentum: buf = 0.9 * buf + g'
    w.grad = torch.zeros_like(w)
    before = w.detach().clone()
    opt.step()
    g2 = 0.01 * before
    trust2 = 0.02 * torch.linalg.vector_norm(before) / torch.linalg.vector_norm(g2)
    buf = 0.9 * (trust * g) + trust2 * g2
    assert torch.allclose(w.detach(), before - 0.1 * buf, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "lars"])
def test_each_optimizer_reduces_a_simple_loss(name: str) -> None:
    net = _net()
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    opt = build_optimizer(name, [net], lr=0.05 if name != "lars" else 1.0, weight_decay=1e-4)
    losses = []
    for _ in range(20):
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.8


def test_bad_optimizer_config() -> None:
    with pytest.raises(ConfigError, match="'adamx' is not one of"):
        build_optimizer("adamx", [_net()], lr=0.1)
    with pytest.raises(ConfigError, match="lr must be > 0"):
        build_optimizer("sgd", [_net()], lr=0.0)


def test_warmup_cosine_shape() -> None:
    total, warm = 100, 10
    vals = [warmup_cosine(s, total, warm, final_ratio=0.1) for s in range(total + 1)]
    assert vals[0] == pytest.approx(1 / 11) and vals[9] == pytest.approx(10 / 11)
    assert vals[10] == pytest.approx(1.0)
    assert vals[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert vals[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(vals[10:], vals[11:]))  # non-increasing after warm-up
    with pytest.raises(ConfigError):
        warmup_cosine(0, 0)


def test_scheduler_drives_lr_and_round_trips_state() -> None:
    net = _net()
    opt = build_optimizer("sgd", [net], lr=1.0)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    state = sched.state_dict()
    opt2 = build_optimizer("sgd", [net], lr=1.0)
    sched2 = build_scheduler(opt2, total_steps=10, warmup_steps=2)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
