"""Named recipes: filled in under the config, explicit keys win, per-objective options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medssl.errors import ConfigError
from medssl.train.config import load_pretrain_config
from medssl.train.recipes import RECIPES, applied_recipe, apply_recipe, recipe_of


def _cfg(tmp_path: Path, text: str, overrides=()):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return load_pretrain_config(p, list(overrides))


def test_small_data_fills_in_what_the_config_does_not_set(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "recipe: small-data\ndata: {name: folder, root: x}\nobjective: {name: simclr}\n"
                         "optim: {lr: 0.002}\n")
    assert cfg.recipe == "small-data"
    assert cfg.optim.final_lr_ratio == 1.0 and cfg.optim.warmup_steps == 0 and cfg.optim.warmup_fraction is None
    assert cfg.optim.lr == 0.002  # the file's own key wins
    assert cfg.objective == {"name": "simclr", "tau": 0.5}


def test_explicit_keys_and_overrides_win_over_the_recipe(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "recipe: small-data\ndata: {name: folder, root: x}\n"
                         "objective: {name: simclr, tau: 0.2}\noptim: {final_lr_ratio: 0.0}\n",
               ["optim.weight_decay=1e-4"])
    assert cfg.objective["tau"] == 0.2 and cfg.optim.final_lr_ratio == 0.0 and cfg.optim.weight_decay == 1e-4
    on_cli = _cfg(tmp_path, "data: {name: folder, root: x}\nobjective: {name: pnnclr}\n", ["recipe=small-data"])
    assert on_cli.optim.final_lr_ratio == 1.0
    assert "tau" not in on_cli.objective  # simclr's option is not forced on another objective
    assert on_cli.objective["instance_weight"] == 1.0 and on_cli.objective["instance_tau"] == 0.5
    own = _cfg(tmp_path, "recipe: small-data\ndata: {name: folder, root: x}\n"
                         "objective: {name: pnnclr, instance_weight: 0.0}\n")
    assert own.objective == {"name": "pnnclr", "instance_weight": 0.0, "instance_tau": 0.5}


def test_objective_options_only_reach_the_objective_they_name() -> None:
    raw = apply_recipe({"recipe": "small-data", "data": {"name": "folder"}})  # no objective: pnnclr
    assert "objective" not in raw or "tau" not in raw["objective"]
    assert all(isinstance(v, dict) for v in RECIPES.values())


def test_model_options_reach_only_the_objective_they_name(tmp_path: Path) -> None:
    text = "recipe: small-data\ndata: {name: folder, root: x}\nobjective: {name: %s}\n"
    assert _cfg(tmp_path, text % "psm").model.predictor is False  # PSM trains without its predictor
    for other in ("pnnclr", "nnclr", "snclr", "simclr"):
        assert _cfg(tmp_path, text % other).model.predictor == "auto"
    # what the file says still wins
    assert _cfg(tmp_path, text % "psm", ["model.predictor=auto"]).model.predictor == "auto"
    kept = _cfg(tmp_path, text % "psm" + "model: {proj_dim: 64}\n")
    assert kept.model.proj_dim == 64 and kept.model.predictor is False  # merged, not replaced


def test_applied_recipe_is_what_a_run_of_that_objective_gets() -> None:
    psm = applied_recipe("small-data", "psm")
    assert psm["model"] == {"predictor": False}
    # the instance term for every neighbour objective, never for SimCLR (its loss is that term)
    for name in ("nnclr", "pnnclr", "snclr", "psm"):
        assert applied_recipe("small-data", name)["objective"] == {"name": name, "instance_weight": 1.0,
                                                                  "instance_tau": 0.5}
    assert applied_recipe("small-data", "simclr")["objective"] == {"name": "simclr", "tau": 0.5}
    assert "model" not in applied_recipe("small-data", "pnnclr")
    psm["model"]["predictor"] = True  # a copy: the registry of recipes is never changed
    assert applied_recipe("small-data", "psm")["model"] == {"predictor": False}
    with pytest.raises(ConfigError, match="unknown recipe 'big'"):
        applied_recipe("big", "psm")
    # read from a raw config: its objective (pnnclr when it names none), None without a recipe
    assert recipe_of({"recipe": "small-data", "objective": {"name": "psm"}}) == applied_recipe("small-data", "psm")
    assert recipe_of({"recipe": "small-data"}) == applied_recipe("small-data", "pnnclr")
    assert recipe_of({"objective": {"name": "psm"}}) is None


def test_unknown_recipe_names_the_file_and_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c.yaml: recipe: unknown recipe 'small_data'.*did you mean 'small-data'"):
        _cfg(tmp_path, "recipe: small_data\ndata: {name: folder, root: x}\n")


def test_the_saved_config_reloads_to_the_same_run(tmp_path: Path) -> None:
    import dataclasses

    cfg = _cfg(tmp_path, "recipe: small-data\ndata: {name: folder, root: x}\nobjective: {name: simclr}\n")
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    assert load_pretrain_config(again) == cfg
