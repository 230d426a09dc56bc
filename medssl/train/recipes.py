"""Named recipes: sets of pretraining defaults chosen by measurement for one kind of data.

A config names one with ``recipe: small-data``; the recipe fills in every key the config
(file, mapping or command-line override) does not set itself, so anything written
explicitly still wins. The objectives' own defaults stay the papers'; what departs from
them for a reason lives here, with the reason (docs/configuration.md, "Recipes").
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Mapping, Optional

from medssl.config import closest
from medssl.errors import ConfigError

# ``objective_options`` and ``model_options`` are merged into ``objective`` / ``model``
# only for the objective they name (an option one objective accepts is an unknown key for
# another; a head one objective trains better without is another's loss).
RECIPES: Dict[str, Dict[str, Any]] = {
    # Small medical data (MedMNIST-size sets, 28-64 px, budgets of 100s of steps). Measured
    # on BloodMNIST's val split at 100 steps (docs/benchmarks.md, "Representation quality"):
    # a constant learning rate was the largest single gain over warm-up + cosine (+2.7
    # points at a 2 % label probe, +3.1 kNN for SimCLR), lightly's SimCLR temperature 0.5
    # the second (+1.6 / +1.0). Head widths, weight decay 0, D4, centre-keeping crops and
    # batched augmentation were each inside the noise or worse alone, so they are not here.
    "small-data": {
        "optim": {"warmup_steps": 0, "warmup_fraction": None, "final_lr_ratio": 1.0},
        # The neighbour objectives plus SimCLR's term on their online projections (at the
        # shipped SimCLR's temperature): +0.05 / +0.05 (pNNCLR, two seeds), +0.04 / +0.03
        # (SNCLR), +0.02 / +0.02 (NNCLR), +0.01 / +0.01 (PSM, two seeds) at a 2 % label probe /
        # kNN on BloodMNIST's val split at 100 steps; their own terms alone carry gradient on
        # one side of each pair and trail SimCLR at one epoch (docs/benchmarks.md, "Sixth round").
        "objective_options": {"simclr": {"tau": 0.5},
                              **{m: {"instance_weight": 1.0, "instance_tau": 0.5}
                                 for m in ("nnclr", "pnnclr", "snclr", "psm")}},
        # PSM without its predictor head (anchors are the online projections): +0.030 at a
        # 2 % label probe and +0.026 kNN over two seeds on BloodMNIST's val split at 100
        # steps; pNNCLR and NNCLR lost 0.01-0.03 without theirs and SNCLR moved +0.009 / -0.001,
        # so only PSM's head goes (docs/benchmarks.md, "Fourth round").
        "model_options": {"psm": {"predictor": False}},
    },
}


def _merge_under(base: Mapping[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    """``top`` with ``base``'s keys filled in where ``top`` has none (mappings merged deeply)."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_under(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_PER_OBJECTIVE = ("objective_options", "model_options")


def applied_recipe(name: str, objective_name: str, source: Optional[str] = None) -> Dict[str, Any]:
    """The config keys recipe ``name`` sets for a run of ``objective_name``: its shared keys
    plus that objective's ``objective`` and ``model`` options (a fresh copy)."""
    if not isinstance(name, str) or name not in RECIPES:
        where = f"{source}: " if source else ""
        hint = closest(str(name), RECIPES) if isinstance(name, str) else None
        raise ConfigError(f"{where}recipe: unknown recipe {name!r}; known: {sorted(RECIPES)}"
                          + (f" (did you mean {hint!r}?)" if hint else "") + "; or remove the key")
    spec = RECIPES[name]
    recipe = copy.deepcopy({k: v for k, v in spec.items() if k not in _PER_OBJECTIVE})
    objective_options = spec.get("objective_options", {})
    if objective_name in objective_options:
        recipe["objective"] = {"name": objective_name, **copy.deepcopy(objective_options[objective_name])}
    model_options = spec.get("model_options", {})
    if objective_name in model_options:
        recipe["model"] = {**recipe.get("model", {}), **copy.deepcopy(model_options[objective_name])}
    return recipe


def recipe_of(raw: Mapping[str, Any], source: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """What the ``recipe`` named in a raw config mapping sets for its objective
    (:func:`applied_recipe`), or None when it names none."""
    name = raw.get("recipe")
    if name is None:
        return None
    objective = raw.get("objective")
    objective_name = objective.get("name", "pnnclr") if isinstance(objective, Mapping) else "pnnclr"
    return applied_recipe(name, objective_name, source)


def apply_recipe(raw: Dict[str, Any], source: Optional[str] = None) -> Dict[str, Any]:
    """``raw`` with its ``recipe`` (if any) filled in under it; ``recipe`` itself is kept
    so that the saved config says which recipe the run used."""
    recipe = recipe_of(raw, source)
    return raw if recipe is None else _merge_under(recipe, raw)


__all__ = ["RECIPES", "applied_recipe", "apply_recipe", "recipe_of"]
