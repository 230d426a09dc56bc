"""A failed collective (a peer that died or hung) surfaces as our DistributedError with a
one-line message through the CLI. The real two-process cases (a rank killed, a rank hung
past the collective timeout) run under torchrun in tests/train/test_distributed.py; here the
collective itself is made to fail as gloo does, so the wrapping is checked in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medssl.train import distributed as D
from medssl.train.loop import Pretrainer

from tests.reliability.harness import assert_clean_cli_error, run_cli, tiny_cfg, write_yaml


def test_collective_timeout_becomes_a_distributed_error(sample_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def pretend_two_ranks(self: Pretrainer, *a: Any, **kw: Any) -> None:
        original_init(self, *a, **kw)
        self.dist = D.DistInfo(rank=0, world_size=2, local_rank=0)  # the loop then agrees on stops

    def timed_out(*_: Any, **__: Any) -> Any:
        raise torch.distributed.DistBackendError(
            "[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 6000ms for recv operation to complete")

    original_init = Pretrainer.__init__
    monkeypatch.setattr(Pretrainer, "__init__", pretend_two_ranks)
    monkeypatch.setattr(D, "agree_on_stop", timed_out)
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=3))
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert_clean_cli_error(rc, err, r"rank 0: a collective with the other processes failed at step 1 \(.*Timed out "
                                    r"waiting 6000ms.*\)\. Another rank died, hung .*MEDSSL_DIST_TIMEOUT_S")
