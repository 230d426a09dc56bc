"""Which checkpoint a run resumes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.errors import MedSSLError
from medssl.train.checkpoint_rotation import CheckpointManager
from medssl.train.resume import find_resume


def _with_checkpoints(tmp_path: Path, steps: list) -> CheckpointManager:
    ckpts = CheckpointManager(tmp_path, keep_last=5)
    for s in steps:
        ckpts.save({"step": s}, s)
    return ckpts


def test_false_never_resumes_even_with_checkpoints(tmp_path: Path) -> None:
    assert find_resume(False, _with_checkpoints(tmp_path, [2])) is None


def test_true_and_auto_take_the_newest(tmp_path: Path) -> None:
    ckpts = _with_checkpoints(tmp_path, [2, 4])
    assert find_resume(True, ckpts) == find_resume("auto", ckpts) == tmp_path / "checkpoints" / "step_00000004.pt"


def test_auto_without_checkpoints_starts_afresh_but_true_is_an_error(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path)
    assert find_resume("auto", ckpts) is None
    with pytest.raises(MedSSLError, match=r"train.resume is true but .*checkpoints holds no checkpoint"):
        find_resume(True, ckpts)


def test_a_path_must_exist(tmp_path: Path) -> None:
    ckpts = _with_checkpoints(tmp_path, [2])
    given = tmp_path / "checkpoints" / "step_00000002.pt"
    assert find_resume(str(given), ckpts) == given
    with pytest.raises(MedSSLError, match=r"train.resume points at .*nope.pt, which does not exist"):
        find_resume(str(tmp_path / "nope.pt"), ckpts)
