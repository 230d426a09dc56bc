import math

import pytest
import torch

from medssl.errors import ConfigError
from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Requirements
from medssl.objectives.simclr import SimCLR, simclr_loss
from objective_helpers import nt_xent_ref, outputs, unit


def test_simclr_loss_matches_loop():
    z1, z2 = unit(5, 8, 0), unit(5, 8, 1)
    assert math.isclose(float(simclr_loss(z1, z2, 0.1)), nt_xent_ref(z1, z2, 0.1), rel_tol=1e-10)


def test_module_forward_uses_z_and_gives_gradient():
    out = outputs()
    loss, diag = SimCLR(tau=0.2)(out)
    assert math.isclose(loss.item(), simclr_loss(out.z[0], out.z[1], 0.2).item(), rel_tol=1e-12)
    loss.backward()
    assert out.z[0].grad is not None and out.z[1].grad.abs().sum() > 0
    assert set(diag) == {"loss", "emb_std"} and diag["loss"] == pytest.approx(loss.item())


def test_emb_std_reports_collapse():
    z = unit(1, 8, 0).repeat(6, 1)
    _, diag = SimCLR()(ViewOutputs(z=[z, z]))
    assert diag["emb_std"] == pytest.approx(0.0, abs=1e-7)


def test_flags():
    assert SimCLR.requirements == Requirements()


@pytest.mark.parametrize("tau", [0, -0.1, "x"])
def test_bad_tau(tau):
    with pytest.raises(ConfigError, match=r"tau.*" + repr(tau).replace("-", r"\-")):
        SimCLR(tau=tau)


def test_missing_second_view_is_clear():
    with pytest.raises(ConfigError, match="two views of outputs.z"):
        SimCLR()(ViewOutputs(z=[unit(4, 8, 0)]))
