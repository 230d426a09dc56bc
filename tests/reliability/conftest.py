"""One intra-op thread for the in-process runs here, as the child processes use
(OMP_NUM_THREADS=1): on a shared 2-core machine a second thread slows tiny steps down
many times over, and the crash test compares bitwise against in-process results."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
