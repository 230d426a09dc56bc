"""The shared support-set step of every neighbour objective: the ``min_fill`` warm-up and
the optional instance term."""

from __future__ import annotations

import pytest
import torch

from medssl.errors import ConfigError
from medssl.objectives.simclr import simclr_loss
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES
from objective_helpers import filled_support, nt_xent_ref, outputs

D = 8
# small k so that an 8-row queue is past the selector's own cold start
OPTIONS = {"nnclr": {}, "pnnclr": {}, "snclr": {"k": 2, "dim": D, "attention": "cosine"}, "psm": {"k": 2, "n_neg": 8}}


def _loss(name: str, min_fill: float, support: SupportSet) -> tuple:
    torch.manual_seed(0)
    obj = OBJECTIVES.build({"name": name, "min_fill": min_fill, "seed": 1, **OPTIONS[name]}).double()
    loss, diag = obj(outputs(b=4, d=D, seed=3), support)
    return float(loss.detach()), diag


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_min_fill_keeps_the_cold_start_until_the_queue_is_that_full(name: str) -> None:
    half = filled_support(8, D, size=16)
    warming, diag = _loss(name, 0.75, half)
    assert diag["cold_start"] == 1.0 and len(half) == 12  # this step's 4 rows were still enqueued
    # exactly the loss of an empty queue: nothing of the 8 stored rows was read
    empty, _ = _loss(name, 0.0, SupportSet(16, D))
    assert warming == pytest.approx(empty, rel=1e-12, abs=1e-12)
    used, diag = _loss(name, 0.75, filled_support(12, D, size=16))
    assert diag["cold_start"] == 0.0 and "nn_purity" in diag
    default, diag = _loss(name, 0.0, filled_support(8, D, size=16))
    assert diag["cold_start"] == 0.0 and default != pytest.approx(warming)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_min_fill_outside_zero_one_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="min_fill"):
        OBJECTIVES.build({"name": "pnnclr", "min_fill": bad})


def _step(name: str, **options: float):
    """Loss, diagnostics and the gradients of z and p of one step on a fresh 8-row queue."""
    torch.manual_seed(0)
    obj = OBJECTIVES.build({"name": name, "seed": 1, **OPTIONS[name], **options}).double()
    out = outputs(b=4, d=D, seed=3)
    loss, diag = obj(out, filled_support(8, D, size=16))
    loss.backward()
    return loss, diag, out


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_the_instance_term_adds_weight_times_simclr_on_the_online_projections(name: str) -> None:
    base, base_diag, base_out = _step(name)
    w, tau = 0.7, 0.5
    loss, diag, out = _step(name, instance_weight=w, instance_tau=tau)
    instance = nt_xent_ref(out.z[0], out.z[1], tau)
    assert float(loss.detach()) == pytest.approx(float(base.detach()) + w * instance, rel=1e-10)
    assert diag["loss"] == pytest.approx(float(loss.detach())) and diag["loss_instance"] == pytest.approx(instance)
    assert diag["loss_objective"] == pytest.approx(float(base.detach())) and "loss_instance" not in base_diag
    # the term's gradient reaches both views' projections; the objective's own gradient is unchanged
    z1, z2 = (z.detach().clone().requires_grad_(True) for z in out.z)
    ref = torch.autograd.grad(w * simclr_loss(z1, z2, tau), (z1, z2))  # checked against a loop in test_simclr
    for v in range(2):
        own = base_out.z[v].grad if base_out.z[v].grad is not None else torch.zeros_like(ref[v])
        assert torch.allclose(out.z[v].grad, own + ref[v], atol=1e-12)
        assert torch.allclose(out.p[v].grad, base_out.p[v].grad, atol=1e-12)


@pytest.mark.parametrize("key, bad", [("instance_weight", -0.5), ("instance_weight", float("nan")),
                                      ("instance_tau", 0.0), ("instance_tau", -1.0)])
def test_a_bad_instance_option_is_a_config_error_naming_it(key: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=key):
        OBJECTIVES.build({"name": "pnnclr", key: bad})
