"""GlobalBatchNorm: BatchNorm's numbers, layer conversion that keeps names and activations.
(The two-rank behaviour is checked end to end in test_distributed.py.)"""

from __future__ import annotations

import copy

import pytest
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from medssl.models.sync_batchnorm import GlobalBatchNorm, convert_global_batchnorm, convert_sync_batchnorm


@pytest.mark.parametrize("shape", [(6, 4), (5, 4, 3, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_global_statistics_path_matches_batchnorm(shape: tuple, momentum: float | None) -> None:
    # Without a process group the all-reduces are identities, so the global path must give
    # exactly what BatchNorm gives on the same rows: output, gradients, running statistics.
    torch.manual_seed(0)
    ref = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(4, momentum=momentum)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours = convert_global_batchnorm(copy.deepcopy(ref))
    assert isinstance(ours, GlobalBatchNorm)
    x = torch.randn(*shape) * 3 + 1
    for _ in range(2):  # twice: running statistics accumulate
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ref(xa), ours._global_forward(xb)
        torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
        w = torch.randn_like(ya)
        (ya * w).sum().backward()
        (yb * w).sum().backward()
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 2
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)


def test_conversion_keeps_state_dict_names_and_outputs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
                          nn.BatchNorm1d(5))
    ref = copy.deepcopy(model)
    conv = convert_sync_batchnorm(model, "cpu")
    assert sum(isinstance(m, GlobalBatchNorm) for m in conv.modules()) == 2
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in conv.modules())
    assert set(conv.state_dict()) == set(ref.state_dict())
    x = torch.randn(8, 3, 6, 6)
    torch.testing.assert_close(conv(x), ref(x))
    conv.eval()
    ref.eval()
    torch.testing.assert_close(conv(x), ref(x))  # running statistics were updated alike


def test_timm_batchnorm_act_keeps_its_activation() -> None:
    torch.manual_seed(0)
    layer = BatchNormAct2d(4, act_layer=nn.ReLU)
    ours = convert_global_batchnorm(copy.deepcopy(layer))
    assert isinstance(ours, GlobalBatchNorm) and isinstance(ours.act, nn.ReLU)
    x = torch.randn(4, 4, 3, 3)
    out = ours(x)
    assert (out >= 0).all() and (out == 0).any()
    torch.testing.assert_close(out, layer(x))


def test_global_batchnorm_rejects_1d_input() -> None:
    with pytest.raises(ValueError, match="expected at least 2D input"):
        GlobalBatchNorm(3)._global_forward(torch.randn(3))
