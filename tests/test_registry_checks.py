"""Tests of medssl/registry.py (named _checks: tests/objectives/test_registry.py holds the objective table's own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.errors import ConfigError, RegistryError
from medssl.registry import AUGMENTATIONS, DATASETS, NEIGHBOURS, OBJECTIVES, Registry


def test_build_checks_keys_against_the_builder_signature() -> None:
    reg = Registry("widget")

    @reg.register("square")
    def square(side: int, colour: str = "red") -> tuple:
        return side, colour

    assert reg.build({"name": "Square", "side": 2}) == (2, "red")
    assert reg.build({"name": "square"}, side=3) == (3, "red")
    with pytest.raises(ConfigError, match=r"unknown key 'color' in widget 'square'\. Did you mean 'colour'"):
        reg.build({"name": "square", "side": 2, "color": "blue"})
    with pytest.raises(ConfigError, match="missing required key\\(s\\) side in widget 'square'"):
        reg.build({"name": "square"})
    with pytest.raises(RegistryError, match=r"unknown widget 'sqare'\. Did you mean 'square'\? Valid names: square"):
        reg.build({"name": "sqare"})
    with pytest.raises(RegistryError, match="a widget config needs a 'name' key"):
        reg.build({"side": 2})


def test_check_names_the_file_and_section() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'objective.tua' in c.yaml \(objective 'simclr'\)\. Did you mean 'tau'"):
        OBJECTIVES.check({"name": "simclr", "tua": 0.1}, "c.yaml", "objective")
    with pytest.raises(RegistryError, match=r"objective.name in c.yaml: unknown objective 'simclrr'"):
        OBJECTIVES.check({"name": "simclrr"}, "c.yaml", "objective")
    with pytest.raises(RegistryError, match="'data' needs a 'name' key in c.yaml"):
        DATASETS.check({"root": "x"}, "c.yaml", "data")


@pytest.mark.parametrize(
    "registry, cfg",
    [
        (DATASETS, {"name": "medmnist", "path": "x.npz", "splt": "train"}),
        (AUGMENTATIONS, {"name": "histo", "hed_thta": 0.1}),
        (OBJECTIVES, {"name": "pnnclr", "alpah": 0.1}),
        (NEIGHBOURS, {"name": "topk", "kk": 3}),
    ],
)
def test_every_registry_refuses_an_unknown_key_before_building(registry: Registry, cfg: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"unknown key '{[k for k in cfg if k != 'name'][-1]}' in {registry.kind}"):
        registry.build(cfg)


def test_split_reads_a_name_or_a_mapping_with_name() -> None:
    assert NEIGHBOURS.split("pnn") == ("pnn", {})
    assert NEIGHBOURS.split({"name": "topk", "k": 3}) == ("topk", {"k": 3})
    with pytest.raises(RegistryError, match=r"^neighbours needs a 'name' key \(nn, pnn, topk\); got keys \['k'\]$"):
        NEIGHBOURS.split({"k": 3}, "neighbours")
    with pytest.raises(RegistryError, match="must be a neighbour name or a mapping with 'name', got 3"):
        NEIGHBOURS.split(3)
