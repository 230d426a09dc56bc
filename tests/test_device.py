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
