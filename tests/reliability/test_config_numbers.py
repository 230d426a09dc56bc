"""Every number a config takes is finite: the class, not only the examples in the corpus.

Walks the pretraining and transfer schemas for every float-typed key, and the objective
registry for every float keyword argument, and sets each to NaN and to infinity through a
dotted override (the way `optim.lr=.nan` reached a run that exited 0 with NaN weights).
A key added later is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from medssl.config import builder_keywords
from medssl.errors import ConfigError
from medssl.eval.config import TransferConfig, load_transfer_config
from medssl.registry import OBJECTIVES
from medssl.train.config import PretrainConfig, load_pretrain_config

REPO = Path(__file__).resolve().parents[2]


def _takes_float(tp: Any) -> bool:
    if tp is float:
        return True
    return any(_takes_float(a) for a in typing.get_args(tp) if a is not type(None))


def _list_of(tp: Any) -> bool:
    """``List[...]`` itself or inside an Optional / Union."""
    return typing.get_origin(tp) is list or any(typing.get_origin(a) is list for a in typing.get_args(tp))


def float_keys(cls: type, prefix: str = "") -> Iterator[str]:
    """``key=VALUE`` override templates for every key of ``cls`` (a config dataclass tree)
    whose type admits a float; a tuple of floats gets the value as its first item."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, dotted = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from float_keys(tp, dotted + ".")
        elif _list_of(tp) and _takes_float(tp):
            yield f"{dotted}=[VALUE]"  # a list of floats (e.g. several label fractions)
        elif typing.get_origin(tp) is tuple and _takes_float(tp):
            rest = ", ".join(["0.5"] * (len(typing.get_args(tp)) - 1))
            yield f"{dotted}=[VALUE, {rest}]"
        elif _takes_float(tp):
            yield f"{dotted}=VALUE"


def objective_float_keys() -> List[Tuple[str, str]]:
    out = []
    for name in OBJECTIVES.names():
        builder = OBJECTIVES.get(name)
        keys = builder_keywords(builder) or []
        target = typing.get_type_hints(builder).get("return", builder)
        params = inspect.signature(target if inspect.isclass(target) else builder).parameters
        out += [(name, k) for k in keys if k in params and isinstance(params[k].default, float)]
    return out


PRETRAIN_KEYS = sorted(float_keys(PretrainConfig))
TRANSFER_KEYS = sorted(float_keys(TransferConfig))
OBJECTIVE_KEYS = objective_float_keys()


def test_the_walk_finds_the_keys_we_know() -> None:
    assert {"optim.lr=VALUE", "optim.betas=[VALUE, 0.5]", "train.collapse_std=VALUE",
            "optim.grad_clip=VALUE"} <= set(PRETRAIN_KEYS)
    assert "label_fraction=VALUE" in TRANSFER_KEYS
    assert ("pnnclr", "alpha") in OBJECTIVE_KEYS and ("simclr", "tau") in OBJECTIVE_KEYS


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("template", PRETRAIN_KEYS)
def test_every_pretraining_float_refuses_non_finite(template: str, value: str) -> None:
    key = template.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key.replace('.', r'[.]')}.*must be a finite number"):
        load_pretrain_config(REPO / "configs" / "demo.yaml", [template.replace("VALUE", value)])


@pytest.mark.parametrize("value", [".nan", ".inf"])
@pytest.mark.parametrize("template", TRANSFER_KEYS)
def test_every_transfer_float_refuses_non_finite(template: str, value: str) -> None:
    key = template.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key.replace('.', r'[.]')}.*must be a finite number"):
        load_transfer_config(None, {"encoder": "runs/x", "data": "d.npz"}, [template.replace("VALUE", value)])


@pytest.mark.parametrize("value", [".nan", ".inf"])
@pytest.mark.parametrize("objective,key", OBJECTIVE_KEYS)
def test_every_objective_float_refuses_non_finite(objective: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"objective[.]{key}.*must be a finite number"):
        load_pretrain_config(REPO / "configs" / "demo.yaml", [f"objective.name={objective}",
                                                              f"objective.{key}={value}"])
