"""The issue-27 recipe options through a real pretraining run: NNCLR's queue from an EMA
target, a SimCLR warm-up, the purity-driven instance term, a queue sized by the data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import medssl
from medssl.train.config import load_pretrain_config
from pretrain_helpers import tiny_cfg


@pytest.mark.slow
def test_the_options_train_and_checkpoint_their_state(sample_dir: Path, tmp_path: Path) -> None:
    objective = {"name": "nnclr", "queue_source": "target", "neighbour_warmup_steps": 1,
                 "instance_schedule": "purity", "instance_weight": 1.0}
    data = tiny_cfg(sample_dir, tmp_path / "r", objective, max_steps=3, log_every=1, ckpt_every=100)
    data["support_set"] = {"size_fraction": 0.5}
    res = medssl.pretrain(load_pretrain_config(data=data), progress=False)
    assert res.steps == 3
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0].get("neighbour_warmup") == 1.0 and "ema_momentum" in rows[0]  # the target network exists
    assert "view_agreement" in rows[1] and rows[1]["instance_weight"] == pytest.approx(1.0)
    state = torch.load(res.checkpoint, map_location="cpu", weights_only=False)
    assert int(state["objective"]["schedule.steps_seen"]) == 3
    assert state["support_set"]["embeddings"].shape[0] == 270  # half of the 540 training images
