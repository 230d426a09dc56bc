"""Resume with a config that trains something else is refused with a diff; --resume-force
continues and records the change; budget, logging and machine changes just work.

Before this, `medssl pretrain --resume` with another dataset, objective or backbone was
accepted silently (or failed deep in torch: another optimiser gave `KeyError: 'step'`)
and rewrote config.yaml and the provenance as if the run had always been that recipe.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

import pytest
import yaml

from medssl.checkpoint_io import load_checkpoint

from tests.reliability.harness import assert_clean_cli_error, run_cli, tiny_cfg, write_yaml

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def run(sample_dir: Path, tmp_path: Path) -> Path:
    """A finished 2-step SimCLR run (SGD) with its checkpoint at step 2; returns its config file."""
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2,
                                                     ckpt_every=2))
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert rc == 0, err
    return cfg


def _resume(cfg: Path, *extra: str) -> List[str]:
    return ["pretrain", str(cfg), "--no-progress", "train.max_steps=4", *extra]


def _history(cfg: Path) -> List[dict]:
    path = cfg.parent / "run" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("override,shown", [
    ("objective.name=nnclr", r"objective\.name: 'simclr' -> 'nnclr'"),
    ("objective.tau=0.5", r"objective\.tau: '\(not set\)' -> 0\.5"),
    ("model.backbone=resnet18", r"model\.backbone: 'test_resnet' -> 'resnet18'"),
    ("optim.name=adam", r"optim\.name: 'sgd' -> 'adam'"),  # was KeyError: 'step' from torch
    ("seed=4", r"seed: 3 -> 4"),
])
def test_a_resume_that_changes_the_recipe_is_refused_with_a_diff(run: Path, override: str, shown: str) -> None:
    run_dir = run.parent / "run"
    ckpt = run_dir / "checkpoints" / "step_00000002.pt"
    before = (ckpt.read_bytes(), (run_dir / "config.yaml").read_text())
    rc, _, err = run_cli(_resume(run, "--resume", override))
    assert_clean_cli_error(rc, err, rf"cannot resume .*step_00000002\.pt: this config differs from the one the run "
                                    rf"was trained with in 1 key\(s\) that change what is trained \({shown}\)\. "
                                    rf"Resume with the run's own config .*config\.yaml.*--resume-force")
    assert (ckpt.read_bytes(), (run_dir / "config.yaml").read_text()) == before  # nothing rewritten


def test_another_dataset_is_refused(run: Path, tmp_path: Path, sample_dir: Path) -> None:
    other = tmp_path / "other.npz"
    shutil.copy(sample_dir / "medmnist" / "ihcstain.npz", other)
    shutil.copy(sample_dir / "medmnist" / "ihcstain.json", other.with_suffix(".json"))
    rc, _, err = run_cli(_resume(run, "--resume", f"data.path={other}"))
    assert_clean_cli_error(rc, err, r"\(data\.path: '.*ihcstain\.npz' -> '.*other\.npz'\)")


def test_budget_and_logging_changes_resume_and_are_recorded(run: Path) -> None:
    rc, _, err = run_cli(_resume(run, "--resume", "train.log_every=2", "train.ckpt_every=1"))
    assert rc == 0, err
    assert load_checkpoint(run.parent / "run" / "checkpoints" / "step_00000004.pt")["step"] == 4
    start, resume = _history(run)
    assert start["event"] == "start" and start["step"] == 0
    assert resume["event"] == "resume" and resume["step"] == 2 and resume["forced"] is False
    assert set(resume["changes"]) == {"train.max_steps", "train.log_every", "train.ckpt_every", "train.resume"}


def test_resume_force_continues_with_another_optimiser_and_records_it(run: Path) -> None:
    rc, _, err = run_cli(_resume(run, "--resume-force", "optim.name=adam", "optim.lr=0.001"))
    assert rc == 0, err
    assert "optimiser state starts afresh" in err
    run_dir = run.parent / "run"
    resume = _history(run)[-1]
    assert resume["forced"] is True
    assert resume["changes"]["optim.name"] == {"old": "sgd", "new": "adam"}
    assert resume["changes"]["optim.lr"] == {"old": 0.05, "new": 0.001}
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["name"] == "adam"
    state = load_checkpoint(run_dir / "checkpoints" / "step_00000004.pt")
    assert state["provenance"]["config"]["optim"]["name"] == "adam"
    # the forced values are the ones used: Adam's state, and the new learning rate's schedule
    assert "exp_avg" in next(iter(state["optimizer"]["state"].values()))
    assert state["scheduler"]["base_lrs"] == [0.001, 0.001]


def test_resume_force_cannot_load_weights_of_another_architecture(run: Path) -> None:
    """Forcing records the change, but weights that do not fit the new model are still our
    one-line error, not a traceback."""
    rc, _, err = run_cli(_resume(run, "--resume-force", "model.proj_dim=8"))
    assert_clean_cli_error(rc, err, r"does not match this config's model.*config\.yaml")
