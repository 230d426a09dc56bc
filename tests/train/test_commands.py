"""``medssl pretrain`` through the CLI: what it prints at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medssl.cli import main
from pretrain_helpers import tiny_cfg


@pytest.mark.parametrize("steps,word", [(1, "1 step "), (2, "2 steps ")])
def test_finished_line_counts_steps_in_english(sample_dir: Path, tmp_path: Path, steps: int, word: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=steps, device="cpu")))
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert f"medssl: finished {word}(last loss" in out.out
    assert "medssl: pretrain" not in out.err  # --no-progress: no status lines either
