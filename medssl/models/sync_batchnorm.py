"""BatchNorm whose batch statistics span every rank (``model.sync_batchnorm: true``).

torch's :class:`~torch.nn.SyncBatchNorm` refuses CPU tensors (torch 2.14: "SyncBatchNorm
expected input tensor to be on GPU"), so a gloo run on CPUs needs its own layer.
:class:`GlobalBatchNorm` all-reduces per-channel sums with the autograd-aware
:func:`all_reduce_with_grad`: in training it normalises every rank's
rows with the mean and (biased) variance of the global batch, exactly what one process
holding the whole batch computes, and its backward pass sums the gradient through the
statistics over ranks. :func:`convert_sync_batchnorm` picks torch's fused layer on CUDA
(via timm, which also keeps the activation of timm's ``BatchNormAct2d``) and this one
elsewhere.
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm



class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over ranks; backward sums the gradient over ranks (its own adjoint)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, differentiable (``x`` itself outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllReduceWithGrad.apply(x)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over ``[N, C, ...]`` inputs with statistics of the batch of all ranks.

    Outside training, or without a process group of two or more ranks, it is plain
    BatchNorm. ``act`` and ``drop`` (identity by default) run after the normalisation,
    as in timm's ``BatchNormAct2d``, so converting such a layer keeps its activation.
    Every rank must call it the same number of times per step (it runs collectives).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 act: Optional[nn.Module] = None, drop: Optional[nn.Module] = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if self.training and _world() > 1:
            out = self._global_forward(input)
        else:
            out = super().forward(input)
        return self.act(self.drop(out))

    def _global_forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        channels = x.shape[1]
        dims: List[int] = [0] + list(range(2, x.dim()))
        shape = [1, channels] + [1] * (x.dim() - 2)
        xf = x.float()
        # The row count rides along with the sums: one collective for both.
        local = torch.cat([xf.sum(dims), xf.new_tensor([x.numel() // channels])])
        total = all_reduce_with_grad(local)
        n = total[-1]
        mean = total[:-1] / n
        centred = xf - mean.view(shape)
        # Two passes (mean, then squared deviations) rather than E[x^2] - E[x]^2: the same
        # numerics as single-process BatchNorm, no cancellation for large activations.
        var = all_reduce_with_grad((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else float(self.momentum))
                count = float(n)
                unbiased = var.detach() * (count / max(count - 1.0, 1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y.to(x.dtype)


def _to_global(bn: _BatchNorm) -> GlobalBatchNorm:
    act, drop = getattr(bn, "act", None), getattr(bn, "drop", None)
    out = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                          act=act if isinstance(act, nn.Module) else None,
                          drop=drop if isinstance(drop, nn.Module) else None)
    # Share the tensors (as torch's converter does) so the optimiser and EMA see the same ones.
    if bn.affine:
        out.weight, out.bias = bn.weight, bn.bias
    out.running_mean, out.running_var = bn.running_mean, bn.running_var
    out.num_batches_tracked = bn.num_batches_tracked
    out.train(bn.training)
    return out


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer in ``module`` by :class:`GlobalBatchNorm` (in place
    for children; returns the new root when ``module`` itself is a BatchNorm). Parameter
    and buffer names are unchanged, so checkpoints stay interchangeable."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        return _to_global(module)
    for name, child in module.named_children():
        new = convert_global_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Synchronised BatchNorm for a run on ``device_type``: torch's fused SyncBatchNorm on
    CUDA (NCCL), :class:`GlobalBatchNorm` elsewhere (gloo on CPU)."""
    if device_type == "cuda":
        from timm.layers import convert_sync_batchnorm as timm_convert

        return timm_convert(module)
    return convert_global_batchnorm(module)
