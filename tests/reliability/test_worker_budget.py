"""DataLoader workers are budgeted like threads: ``num_workers: auto`` (the default and
what the shipped configs say) never asks for more workers than torch suggests, so its
"This DataLoader will create N worker processes ... suggested max" warning does not
appear on a 2-core machine; an explicit number wins and is logged."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from medssl.config import load_yaml
from medssl.threads import plan_workers
from tests.reliability.harness import run_cli, tiny_cfg, write_yaml

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("cores, expected", [(1, 0), (2, 1), (4, 3), (64, 8)])
def test_auto_keeps_one_core_for_training(cores: int, expected: int) -> None:
    assert plan_workers("auto", cores=cores, local_ranks=1)[0] == expected
    assert plan_workers("auto", cores=8, local_ranks=4)[0] == 1  # four ranks share eight cores


def test_an_explicit_number_wins_and_says_so() -> None:
    assert plan_workers(4, cores=2, local_ranks=1) == (4, "train.num_workers=4, more than the 2 usable core(s)")
    assert plan_workers(0, cores=2, local_ranks=1)[0] == 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_shipped_config_makes_torch_warn_about_workers_on_two_cores(path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    raw = load_yaml(path)
    setting = raw.get("train", {}).get("num_workers", "auto") if "train" in raw else raw.get("num_workers", 0)
    workers = plan_workers(setting, cores=2, local_ranks=1)[0]
    loader = DataLoader(list(range(4)), num_workers=workers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader.check_worker_number_rationality()


def test_the_default_is_auto_and_the_run_logs_its_workers(sample_dir: Path, tmp_path: Path) -> None:
    from medssl.train.config import TrainConfig

    assert TrainConfig().num_workers == "auto"
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=1)
    del cfg["train"]["num_workers"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*suggested max number of worker.*")
        rc, _, err = run_cli(["pretrain", str(write_yaml(tmp_path / "c.yaml", cfg)), "--no-progress"])
    assert rc == 0, err
    assert "DataLoader worker process" in err and "(auto: " in err and "suggested max" not in err
    torch.set_num_threads(1)
