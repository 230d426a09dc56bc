"""The one device resolver."""

from __future__ import annotations

import pytest
import torch

from medssl.device import resolve_device
from medssl.errors import ConfigError


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="augment.device must be one of auto, cpu, cuda, got 'tpu'"):
        resolve_device("tpu", "augment.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)


def test_cuda_without_gpu_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'"):
        resolve_device("cuda", "train.device", local_rank=0)


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    from medssl.device import cpu_has_native_bf16

    assert cpu_has_native_bf16("processor : 0\nflags : fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_native_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert cpu_has_native_bf16("Features\t: fp asimd bf16 i8mm\n")  # Arm
    assert not cpu_has_native_bf16("flags : fpu sse avx2 avx512f avx512_vnni\n")
    assert not cpu_has_native_bf16("model name : avx512_bf16 in a name is not a flag\n")
    assert not cpu_has_native_bf16("")
