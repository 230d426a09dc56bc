"""The run directory: config.yaml, and metrics rows trimmed to the resumed step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medssl.errors import ConfigError
from medssl.train.run_dir import append_history, open_run_dir


def test_writes_config_and_keeps_rows_up_to_the_resumed_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3, 4)))
    logger = open_run_dir(run, {"seed": 3}, step=2)
    logger.log({"step": 3, "loss": 0.5})
    logger.close()
    assert yaml.safe_load((run / "config.yaml").read_text()) == {"seed": 3}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["loss"] == 0.5


def test_fresh_start_forgets_rows_of_a_run_killed_before_its_first_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    open_run_dir(run, {}, step=0).close()
    assert (run / "metrics.jsonl").read_text() == ""


def test_unwritable_run_dir_is_a_config_error_naming_out_dir(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=r"cannot write the run directory .*file.txt/run \(out_dir\)"):
        open_run_dir(tmp_path / "file.txt" / "run", {}, step=0)


def test_history_records_each_event_as_a_json_line(tmp_path: Path) -> None:
    append_history(tmp_path, "start", 0, {})
    append_history(tmp_path, "resume", 12, {"optim.lr": (0.001, 0.01)}, checkpoint=tmp_path / "c.pt", forced=True)
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["event"] for r in rows] == ["start", "resume"]
    assert rows[1]["changes"] == {"optim.lr": {"old": 0.001, "new": 0.01}} and rows[1]["forced"] is True
    assert rows[1]["step"] == 12
