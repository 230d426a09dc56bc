"""The MLP heads on top of the backbone: projector ``g`` and predictor ``q``.

Linear layers followed by BatchNorm have no bias: the BatchNorm shift makes it redundant.
"""

from __future__ import annotations

from torch import Tensor, nn

from medssl.errors import ConfigError


def _check_dims(**dims: int) -> None:
    for name, value in dims.items():
        if int(value) < 1:
            raise ConfigError(f"head dimension {name} must be >= 1; got {value}")


class ProjectionHead(nn.Module):
    """The projector ``[B, in_dim] -> [B, out_dim]``: ``F -> H -> ... -> H -> D``.

    ``num_layers`` Linear layers; each hidden one is followed by BatchNorm1d and ReLU.
    With ``last_bn`` (NNCLR's head, the default) the output layer is Linear + BatchNorm1d
    without ReLU; without it the output layer is a plain Linear with a bias (SimCLR's
    head as lightly builds it: ``num_layers=2, last_bn=False``).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 256, num_layers: int = 3,
                 last_bn: bool = True) -> None:
        super().__init__()
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim, num_layers=num_layers)
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            hidden = i < num_layers - 1
            if hidden or last_bn:
                layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out)]
            else:
                layers.append(nn.Linear(d_in, d_out))
            if hidden:
                layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PredictionHead(nn.Module):
    """The predictor ``[B, dim] -> [B, dim]``: Linear, BatchNorm1d, ReLU, Linear."""

    def __init__(self, dim: int = 256, hidden_dim: int = 4096) -> None:
        super().__init__()
        _check_dims(dim=dim, hidden_dim=hidden_dim)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, dim),
        )
        self.dim = int(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
