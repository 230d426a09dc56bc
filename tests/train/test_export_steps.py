"""``train.export_steps``: the encoder exported at chosen steps of one run (a curve along
one schedule), before that step's checkpoint, and changeable on resume."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from safetensors.torch import load_file

import medssl
from medssl.errors import ConfigError
from medssl.train.config import load_pretrain_config
from medssl.train.loop import Pretrainer, snapshot_path
from pretrain_helpers import tiny_cfg


@pytest.mark.slow
def test_snapshots_at_the_asked_steps_survive_a_resume(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    data = tiny_cfg(sample_dir, out, "simclr", max_steps=4, ckpt_every=2, export_steps=[1, 2])
    first = load_pretrain_config(data=data)
    # stop after step 2 (its checkpoint written), as a killed sitting would
    trainer = Pretrainer(first, progress=False)
    orig = trainer.train_step

    def step_then_stop(batch):
        res = orig(batch)
        if trainer.step == 2:
            trainer._on_signal(signal.SIGTERM, None)
        return res

    trainer.train_step = step_then_stop  # type: ignore[method-assign]
    assert trainer.fit().steps == 2
    assert snapshot_path(out, 1).is_file() and snapshot_path(out, 2).is_file()
    # resumed with another export list (a safe key): the run finishes, earlier snapshots stay
    again = load_pretrain_config(data={**data, "train": {**data["train"], "export_steps": [3], "resume": True}})
    res = medssl.pretrain(again, progress=False)
    assert res.steps == 4
    for step in (1, 2, 3):
        meta = json.loads(snapshot_path(out, step).with_suffix(".json").read_text())
        assert meta["steps"] == step
    final = load_file(str(out / "encoder.safetensors"))
    snap = load_file(str(snapshot_path(out, 2)))
    assert any(not bool((final[k] == snap[k]).all()) for k in final if final[k].is_floating_point())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert "train.export_steps" in history[-1]["changes"] and not history[-1]["forced"]


def test_export_steps_must_be_positive(sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.export_steps\[1\]"):
        load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "x", "simclr", export_steps=[2, 0]))
