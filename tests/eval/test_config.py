"""Every shipped transfer config loads and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.eval.config import load_transfer_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "transfer").glob("*.yaml"))


def test_there_are_transfer_configs() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"stl10_to_pcam", "stl10_to_pathmnist", "stl10_to_bloodmnist", "sample_demo"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_transfer_config_validates(path: Path) -> None:
    cfg = load_transfer_config(path)
    assert cfg is not None
