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


def test_rerunning_a_finished_run_says_it_was_complete(sample_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`train.resume: auto` (the demo's setting) on a finished run: no training, so no loss
    to print (it was `last loss nan`); say the run was complete and re-exported."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2, device="cpu",
                                           resume="auto")))
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    assert "medssl: finished 2 steps (last loss" in capsys.readouterr().out
    encoder = tmp_path / "run" / "encoder.safetensors"
    encoder.unlink()
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "last loss" not in out
    assert "medssl: the run was already complete (2 steps); nothing to train, the encoder was re-exported." in out
    assert encoder.is_file()
