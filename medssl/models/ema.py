"""The target network: an exponential moving average (EMA) of the online network.

``θ' <- λ θ' + (1 - λ) θ`` after each optimiser step, with λ rising from ``base`` to 1 on
a cosine over training (BYOL's schedule). Buffers (BatchNorm running statistics,
``num_batches_tracked``) are copied from the online network, not averaged.

BatchNorm mode: the target is a submodule of the SSL model, so ``model.train()`` /
``model.eval()`` switch it together with the online network. During training the
target's BatchNorm therefore normalises with the current batch's statistics, as the
online network does (BYOL / MoCo v3 practice); this keeps ``t`` on the same scale as the
online outputs, whereas running statistics lag behind early in training. The running
statistics it accumulates in such a forward are overwritten by the next update's copy.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from medssl.errors import ConfigError


def cosine_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """EMA momentum λ at ``step``: ``1 - (1 - base) (cos(π step / T) + 1) / 2``.

    ``λ(0) = base``, ``λ(T) = 1``, non-decreasing; steps outside ``[0, T]`` are clamped.
    """
    if not 0.0 <= base <= 1.0:
        raise ConfigError(f"EMA base momentum must be in [0, 1]; got {base}")
    if total_steps <= 0:
        raise ConfigError(f"total_steps for the EMA schedule must be >= 1; got {total_steps}")
    frac = min(max(step, 0), total_steps) / total_steps
    return 1.0 - (1.0 - base) * (math.cos(math.pi * frac) + 1.0) / 2.0


def _lerp_group(target: list[torch.Tensor], online: list[torch.Tensor], weight: float) -> None:
    # One fused kernel per device/dtype group instead of one per tensor (matters on GPU).
    groups: dict[tuple[Any, Any], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for t, o in zip(target, online):
        g = groups.setdefault((t.device, t.dtype), ([], []))
        g[0].append(t)
        g[1].append(o.to(dtype=t.dtype))
    for ts, os_ in groups.values():
        torch._foreach_lerp_(ts, os_, weight)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place: ``target.param <- momentum * target.param + (1 - momentum) * online.param``;
    buffers are copied. Both modules must have the same parameter and buffer names."""
    if not 0.0 <= momentum <= 1.0:
        raise ConfigError(f"EMA momentum must be in [0, 1]; got {momentum}")
    tp, op = dict(target.named_parameters()), dict(online.named_parameters())
    tb, ob = dict(target.named_buffers()), dict(online.named_buffers())
    if tp.keys() != op.keys() or tb.keys() != ob.keys():
        diff = sorted((tp.keys() ^ op.keys()) | (tb.keys() ^ ob.keys()))
        raise ValueError(f"EMA target and online network differ in structure: {diff[:10]}")
    names = list(tp)
    _lerp_group([tp[n] for n in names], [op[n].detach() for n in names], 1.0 - momentum)
    for n, b in tb.items():
        b.copy_(ob[n])


class EMATarget(nn.Module):
    """A frozen exact copy of ``online`` (``requires_grad=False``), updated by EMA.

    Calling it runs the copy under ``torch.no_grad()``. Its train/eval mode follows the
    parent module (see the module docstring for why BatchNorm runs in train mode).
    """

    def __init__(self, online: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(online)
        for p in self.module.parameters():
            p.requires_grad_(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def update(self, online: nn.Module, momentum: float) -> None:
        """Apply one EMA step from ``online`` with the given momentum λ."""
        ema_update(self.module, online, momentum)
