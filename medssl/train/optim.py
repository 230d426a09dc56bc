"""Optimisers (Adam, AdamW, SGD with momentum, LARS) and the warm-up + cosine schedule.

Biases and normalisation parameters (every parameter with fewer than 2 dimensions) get
no weight decay and, under LARS, no layer-wise adaptation: the usual practice of SimCLR,
BYOL and NNCLR, since scaling those by their norm destabilises training.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

import torch
from torch import nn
from torch.optim import Optimizer

from medssl.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "lars")


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    For a parameter ``w`` with gradient ``g`` (weight decay ``wd`` folded into ``g``), the
    update uses ``g * trust`` with ``trust = eta * ||w|| / ||g + wd w||`` when both norms
    are positive, else 1. Parameter groups with ``lars_exclude=True`` skip the scaling.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        nesterov: bool = False,
    ) -> None:
        if lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                        nesterov=nesterov, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Any] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    g = g.mul(trust)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                step = g.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(step, alpha=-group["lr"])
        return loss


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> List[Dict[str, Any]]:
    """Split trainable parameters into decayed (matrices, convolutions) and not decayed
    (biases, norm weights) groups; shared parameters are counted once."""
    seen: set[int] = set()
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(
    name: str,
    modules: Iterable[nn.Module],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eta: float = 0.02,
) -> Optimizer:
    """An optimiser over the trainable parameters of ``modules`` (model and objective)."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ConfigError(f"optim.name {name!r} is not one of {list(OPTIMIZERS)}")
    if lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {lr}")
    groups = param_groups(modules, weight_decay)
    if key == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta)
    for g in groups:  # the flag only means something to LARS
        g.pop("lars_exclude", None)
    if key == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas)
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int = 0, final_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear from ``1/(warmup+1)`` to 1 over
    ``warmup_steps``, then a cosine from 1 to ``final_ratio`` at ``total_steps``."""
    if total_steps <= 0:
        raise ConfigError(f"total_steps must be > 0, got {total_steps}")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0,
                    final_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR applying :func:`warmup_cosine` (its state is checkpointable)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps, final_ratio)
    )
