from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from medssl.errors import WriteError
from medssl.checkpoint_io import (
    CheckpointError,
    atomic_write,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from medssl.errors import MedSSLError


class _RunsCode:
    """A pickle payload that would call a function when unpickled."""

    def __reduce__(self):  # noqa: D401
        return (Path.touch, (Path(self.marker),))

    def __init__(self, marker: str) -> None:
        self.marker = marker


def test_round_trip(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 4), "step": 7, "name": "x", "nested": {"l": [1, 2.5]}}
    p = save_checkpoint(state, tmp_path / "sub" / "ckpt.pt")
    back = load_checkpoint(p)
    assert torch.equal(back["w"], state["w"]) and back["step"] == 7 and back["nested"] == {"l": [1, 2.5]}
    assert [f.name for f in p.parent.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    p = save_checkpoint({"v": torch.tensor(1)}, tmp_path / "c.pt")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half a checkpoint")
        raise RuntimeError("disk full")

    with pytest.raises(WriteError, match=r"cannot write .*c\.pt: the write failed \(RuntimeError: disk full; "):
        atomic_write(p, broken)
    assert int(load_checkpoint(p)["v"]) == 1
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.pt"]


def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"payload": _RunsCode(str(marker))}, evil)
    with pytest.raises(CheckpointError, match="refused to load .*evil.pt.*run code"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_missing_truncated_and_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    p = save_checkpoint({"w": torch.randn(100, 100)}, tmp_path / "t.pt")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(p)
    lst = tmp_path / "list.pt"
    torch.save([1, 2], lst)
    with pytest.raises(CheckpointError, match="expected a mapping"):
        load_checkpoint(lst)
    assert issubclass(CheckpointError, MedSSLError)


def test_rng_state_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(1)
    p = save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expect = (random.random(), np.random.rand(), float(torch.rand(1)), np.random.randn())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    restore_rng_state(load_checkpoint(p)["rng"])
    got = (random.random(), np.random.rand(), float(torch.rand(1)), np.random.randn())
    assert got == expect


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_reported_by_its_errno(tmp_path: Path) -> None:
    """Written through a file object, torch.save surfaces a full device as OSError(ENOSPC)
    (given a path, its writer raises a RuntimeError with no errno), so the diagnosis can
    rest on the errno instead of a guess."""
    import errno

    from medssl.checkpoint_io import _save_through_file
    from medssl.fileio import write_failure_reason

    with pytest.raises(OSError) as info:
        _save_through_file({"w": torch.zeros(100_000)}, Path("/dev/full"))
    assert info.value.errno == errno.ENOSPC
    assert write_failure_reason(info.value, tmp_path).startswith("disk full (No space left on device; ")
    other = write_failure_reason(RuntimeError("DataLoader worker (pid 7) is killed by signal: Terminated."), tmp_path)
    assert "disk full" not in other and "DataLoader worker (pid 7)" in other
