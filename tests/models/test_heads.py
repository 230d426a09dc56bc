"""Projection and prediction heads: layer structure and shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medssl.errors import ConfigError
from medssl.models.heads import PredictionHead, ProjectionHead


def _types(m: nn.Module) -> list[type]:
    return [type(x) for x in m.net]


def test_projection_head_structure_and_shape() -> None:
    h = ProjectionHead(32, hidden_dim=64, out_dim=16)
    L, B, R = nn.Linear, nn.BatchNorm1d, nn.ReLU
    assert _types(h) == [L, B, R, L, B, R, L, B]  # BatchNorm on the output, no final ReLU
    dims = [(x.in_features, x.out_features) for x in h.net if isinstance(x, nn.Linear)]
    assert dims == [(32, 64), (64, 64), (64, 16)]
    out = h(torch.randn(6, 32))
    assert out.shape == (6, 16)
    assert (out < 0).any()  # no ReLU at the end
    # Train-mode BatchNorm output with default affine: zero mean per dimension.
    torch.testing.assert_close(out.mean(0), torch.zeros(16), atol=1e-5, rtol=0)


def test_projection_head_layer_count() -> None:
    h2 = ProjectionHead(8, hidden_dim=12, out_dim=4, num_layers=2)
    assert sum(isinstance(x, nn.Linear) for x in h2.net) == 2
    h1 = ProjectionHead(8, out_dim=4, num_layers=1)
    assert _types(h1) == [nn.Linear, nn.BatchNorm1d]
    with pytest.raises(ConfigError, match="num_layers must be >= 1"):
        ProjectionHead(8, num_layers=0)


def test_projection_head_without_output_batchnorm_is_lightlys_simclr_head() -> None:
    h = ProjectionHead(32, hidden_dim=64, out_dim=16, num_layers=2, last_bn=False)
    L, B, R = nn.Linear, nn.BatchNorm1d, nn.ReLU
    assert _types(h) == [L, B, R, L]
    hidden, out_layer = h.net[0], h.net[3]
    assert hidden.bias is None and out_layer.bias is not None  # BatchNorm shifts the hidden layer only
    # Without the output BatchNorm the rows are not centred per dimension.
    torch.manual_seed(0)
    with torch.no_grad():
        out_layer.bias.fill_(1.0)
    out = h(torch.randn(6, 32))
    assert out.shape == (6, 16) and out.mean(0).abs().min() > 0.1
    h1 = ProjectionHead(8, out_dim=4, num_layers=1, last_bn=False)
    assert _types(h1) == [L] and h1.net[0].bias is not None


def test_prediction_head_structure_and_shape() -> None:
    h = PredictionHead(16, hidden_dim=32)
    assert _types(h) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert h.net[0].in_features == 16 and h.net[0].out_features == 32
    assert h.net[3].out_features == 16 and h.net[3].bias is not None
    assert h(torch.randn(5, 16)).shape == (5, 16)
    with pytest.raises(ConfigError, match="hidden_dim must be >= 1"):
        PredictionHead(16, hidden_dim=0)
