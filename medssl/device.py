"""Where computation runs: the one resolver behind every ``device`` option
(``train.device``, ``medssl transfer --device``, ``device`` of a transfer config)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from medssl.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, key: str = "device", local_rank: Optional[int] = None) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` as a device.

    ``local_rank`` picks the GPU of a ``torchrun`` process for ``auto`` / ``cuda``. An
    unknown name, or CUDA without a GPU, is a :class:`ConfigError` naming ``key``.
    """
    text = str(name).lower()
    if text not in DEVICES and not text.startswith("cuda:"):
        raise ConfigError(f"{key} must be one of {', '.join(DEVICES)}, got {name!r}")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key} is {name!r} but no CUDA device is available; use 'auto' or 'cpu'")
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if text in ("auto", "cuda"):
        return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)
    return torch.device(text)


# CPU flags of native bfloat16 arithmetic: x86 AVX512-BF16 / AMX-BF16, Arm BF16 (FEAT_BF16)
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_has_native_bf16(cpuinfo: Optional[str] = None) -> bool:
    """Whether this CPU computes in bfloat16 natively (``/proc/cpuinfo`` flags; ``cpuinfo``
    is that text, read when None). False when it cannot be told (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and set(value.split()) & set(_BF16_FLAGS):
            return True
    return False
