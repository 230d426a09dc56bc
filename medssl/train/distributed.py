"""Process-group set-up for ``torchrun`` launches, and the collectives the loop needs.

``torchrun --nproc_per_node=N -m medssl pretrain CONFIG`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`init_distributed` reads them and
starts gloo (CPU) or NCCL (CUDA). A plain ``medssl pretrain`` runs as a single process
with rank 0 and world size 1, and every helper here is then a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
import torch.distributed as dist

from medssl.errors import ConfigError, MedSSLError


class DistributedError(MedSSLError):
    """The process group could not be set up, or a peer went away."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


TIMEOUT_ENV = "MEDSSL_DIST_TIMEOUT_S"


def collective_timeout(default_s: float = 600.0) -> float:
    """Seconds a collective may wait for a peer: ``$MEDSSL_DIST_TIMEOUT_S`` or ``default_s``."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None or raw.strip() == "":
        return default_s
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"${TIMEOUT_ENV}={raw!r} is not a positive number of seconds; unset it or use e.g. 600")
    return value


def init_distributed(device_type: str, timeout_s: Optional[float] = None) -> DistInfo:
    """Join the process group described by torchrun's environment variables, if any.

    The timeout bounds every collective, so a rank that hangs makes the others fail with
    an error after ``timeout_s`` seconds (default :func:`collective_timeout`) instead of
    waiting forever. A rank that dies outright is noticed sooner: torchrun's agent stops
    the other workers, and gloo/NCCL fail on the closed connection.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if timeout_s is None:
        timeout_s = collective_timeout()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"could not join the process group (rank {rank} of {world}, backend {backend}): {exc}. "
            "Launch with torchrun, which sets MASTER_ADDR/MASTER_PORT."
        ) from exc
    return DistInfo(rank, world, local)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x [B, ...]`` from every rank in rank order, keeping the gradient path
    to this rank's slice (the backward pass sums the other ranks' contributions)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums the gathered gradient over ranks and keeps this
    rank's slice (the adjoint of the gather when every rank computes its own loss from the
    gathered batch). Ours rather than ``torch.distributed.nn.functional.all_gather``, which
    is deprecated in torch 2.14 and emulates reduce-scatter with scatters on gloo."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rows = x.shape[0]
        return gather_no_grad(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x [B, ...]`` in rank order without gradient (equal B on every rank)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts: List[torch.Tensor] = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean_(tensors: List[torch.Tensor]) -> None:
    """Average tensors in place across ranks (used for the objective's own gradients)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(world)


def broadcast_object(obj: Optional[object], src: int = 0) -> object:
    """Send a small picklable value from ``src`` to every rank (e.g. the run directory)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_module_(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers into ``module`` on every rank, in place (for
    modules outside DDP, e.g. an objective's attention weights, which each rank would
    otherwise initialise from its own seed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def agree_on_stop(signum: Optional[int], device: Optional[torch.device] = None) -> Optional[int]:
    """The stop signal any rank received (largest number), or None: every rank must leave
    the loop at the same step, or the next collective pairs up different operations."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return signum
    flag = torch.tensor([signum or 0], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    value = int(flag.item())
    return value if value > 0 else None
