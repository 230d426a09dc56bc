"""The shared support-set step: the ``min_fill`` warm-up of every neighbour objective."""

from __future__ import annotations

import pytest
import torch

from medssl.errors import ConfigError
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES
from objective_helpers import filled_support, outputs

D = 8
# small k so that an 8-row queue is past the selector's own cold start
OPTIONS = {"nnclr": {}, "pnnclr": {}, "snclr": {"k": 2, "dim": D, "attention": "cosine"}, "psm": {"k": 2, "n_neg": 8}}


def _loss(name: str, min_fill: float, support: SupportSet) -> tuple:
    torch.manual_seed(0)
    obj = OBJECTIVES.build({"name": name, "min_fill": min_fill, "seed": 1, **OPTIONS[name]}).double()
    loss, diag = obj(outputs(b=4, d=D, seed=3), support)
    return float(loss.detach()), diag


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_min_fill_keeps_the_cold_start_until_the_queue_is_that_full(name: str) -> None:
    half = filled_support(8, D, size=16)
    warming, diag = _loss(name, 0.75, half)
    assert diag["cold_start"] == 1.0 and len(half) == 12  # this step's 4 rows were still enqueued
    # exactly the loss of an empty queue: nothing of the 8 stored rows was read
    empty, _ = _loss(name, 0.0, SupportSet(16, D))
    assert warming == pytest.approx(empty, rel=1e-12, abs=1e-12)
    used, diag = _loss(name, 0.75, filled_support(12, D, size=16))
    assert diag["cold_start"] == 0.0 and "nn_purity" in diag
    default, diag = _loss(name, 0.0, filled_support(8, D, size=16))
    assert diag["cold_start"] == 0.0 and default != pytest.approx(warming)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_min_fill_outside_zero_one_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="min_fill"):
        OBJECTIVES.build({"name": "pnnclr", "min_fill": bad})
