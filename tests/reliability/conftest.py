"""One intra-op thread for the in-process runs here, as the child processes use
(OMP_NUM_THREADS=1): on a shared 2-core machine a second thread slows tiny steps down
many times over, and the crash test compares bitwise against in-process results.

``OMP_NUM_THREADS`` is set as well as torch's count, because ``pretrain`` applies its own
thread budget (``train.threads: auto``), in which that variable is an explicit setting:
without it an in-process reference would train on every core while the children train on
one, and float sums in another order are not bitwise equal."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
