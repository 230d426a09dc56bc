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

# ``objective_options`` are merged into ``objective`` only for the objective they name
# (an option one objective accepts is an unknown key for another).
RECIPES: Dict[str, Dict[str, Any]] = {
    # Small medical data (MedMNIST-size sets, 28-64 px, budgets of 100s of steps). Measured
    # on BloodMNIST's val split at 100 steps (docs/benchmarks.md, "Representation quality"):
    # a constant learning rate was the largest single gain over warm-up + cosine (+2.7
    # points at a 2 % label probe, +3.1 kNN for SimCLR), lightly's SimCLR temperature 0.5
    # the second (+1.6 / +1.0). Head widths, weight decay 0, D4, centre-keeping crops and
    # batched augmentation were each inside the noise or worse alone, so they are not here.
    "small-data": {
        "optim": {"warmup_steps": 0, "warmup_fraction": None, "final_lr_ratio": 1.0},
        "objective_options": {"simclr": {"tau": 0.5}},
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


def apply_recipe(raw: Dict[str, Any], source: Optional[str] = None) -> Dict[str, Any]:
    """``raw`` with its ``recipe`` (if any) filled in under it; ``recipe`` itself is kept
    so that the saved config says which recipe the run used."""
    name = raw.get("recipe")
    if name is None:
        return raw
    where = f"{source}: " if source else ""
    if not isinstance(name, str) or name not in RECIPES:
        hint = closest(str(name), RECIPES) if isinstance(name, str) else None
        raise ConfigError(f"{where}recipe: unknown recipe {name!r}; known: {sorted(RECIPES)}"
                          + (f" (did you mean {hint!r}?)" if hint else "") + "; or remove the key")
    # _merge_under copies what it takes from the recipe; RECIPES itself is never changed
    recipe = {k: v for k, v in RECIPES[name].items() if k != "objective_options"}
    options = RECIPES[name].get("objective_options", {})
    objective = raw.get("objective")
    objective_name = objective.get("name", "pnnclr") if isinstance(objective, Mapping) else "pnnclr"
    if objective_name in options:
        recipe["objective"] = {"name": objective_name, **options[objective_name]}
    return _merge_under(recipe, raw)


__all__ = ["RECIPES", "apply_recipe"]
