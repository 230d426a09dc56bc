"""medssl.precision: the decision rule, the cache, the probe's cost and its side effects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from torch import nn

import medssl.precision as P

SHAPE = {"batch": 4, "size": 8, "step": "train"}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "precision_probe.json"


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))


def _train_step(model: nn.Module, bf16: bool) -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = model(x)
    y.float().sum().backward()


def _timer(fp32_s: float, bf16_s: float, calls: List[int]):
    def timer(step) -> Dict[str, float]:
        calls.append(1)
        step(False)
        step(True)
        return {"fp32_s": fp32_s, "bf16_s": bf16_s}
    return timer


@pytest.mark.parametrize("fp32_s, bf16_s, chosen", [
    (1.0, 0.5, torch.bfloat16),   # 2x: bf16
    (1.15, 1.0, torch.bfloat16),  # exactly the margin
    (1.1, 1.0, None),             # faster, but within the noise of a loaded machine
    (1.0, 3.0, None),             # the slow bf16 kernels of some shapes
    (0.0, 1.0, None),             # nothing measured
])
def test_bf16_is_chosen_only_past_the_margin(fp32_s: float, bf16_s: float, chosen) -> None:
    assert P.decide(fp32_s, bf16_s) == chosen


def test_a_cpu_without_native_bf16_is_never_timed(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    calls: List[int] = []
    choice = P.choose_cpu_precision(_model(), _train_step, SHAPE, timer=_timer(1.0, 0.1, calls))
    assert choice.dtype is None and choice.source == "no-native-bf16" and calls == []
    assert "no native bf16" in choice.describe() and not cache.exists()


def test_the_probe_is_cached_per_model_and_shape(cache: Path, native: None) -> None:
    calls: List[int] = []
    model = _model()
    first = P.choose_cpu_precision(model, _train_step, SHAPE, timer=_timer(2.0, 1.0, calls))
    assert first.dtype is torch.bfloat16 and first.source == "probe" and len(calls) == 1
    again = P.choose_cpu_precision(model, _train_step, SHAPE, timer=_timer(1.0, 2.0, calls))
    assert (again.dtype, again.source, again.fp32_s, again.bf16_s) == (torch.bfloat16, "cache", 2.0, 1.0)
    assert len(calls) == 1
    other = P.choose_cpu_precision(model, _train_step, {**SHAPE, "batch": 8}, timer=_timer(1.0, 2.0, calls))
    assert other.dtype is None and other.source == "probe" and len(calls) == 2
    stored = json.loads(cache.read_text())
    assert len(stored) == 2 and all({"fp32_s", "bf16_s", "when"} <= set(v) for v in stored.values())


def test_a_damaged_or_unwritable_cache_only_costs_a_probe(tmp_path: Path, native: None,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))
    (tmp_path / "precision_probe.json").write_text("[not a dict")
    calls: List[int] = []
    assert P.choose_cpu_precision(_model(), _train_step, SHAPE, timer=_timer(2.0, 1.0, calls)).dtype is torch.bfloat16
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(P.CACHE_ENV, str(blocker / "sub"))  # a folder that cannot be made
    choice = P.choose_cpu_precision(_model(), _train_step, SHAPE, timer=_timer(1.0, 2.0, calls))
    assert choice.dtype is None and len(calls) == 2
    assert "could not cache the precision probe" in capsys.readouterr().err


def test_the_probe_leaves_the_model_and_the_global_rng_alone(cache: Path, native: None) -> None:
    model = _model()
    _train_step(model, False)
    model.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    P.choose_cpu_precision(model, _train_step, SHAPE)  # the real timer, real steps
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included
    assert all(p.grad is None for p in model.parameters())


class _FakeClock:
    """perf_counter for time_steps: each step advances it by its precision's cost."""

    def __init__(self, cost: Dict[bool, float]) -> None:
        self.now, self.cost, self.calls = 0.0, cost, []

    def step(self, bf16: bool) -> None:
        self.calls.append(bf16)
        self.now += self.cost[bf16]


@pytest.mark.parametrize("fp32, bf16, pairs", [(1.0, 0.25, 1), (1.0, 4.0, 1), (1.0, 0.9, 3), (1.0, 1.0, 3)])
def test_an_obvious_answer_stops_after_one_timed_pair(monkeypatch: pytest.MonkeyPatch, fp32: float, bf16: float,
                                                      pairs: int) -> None:
    clock = _FakeClock({False: fp32, True: bf16})
    monkeypatch.setattr(P.time, "perf_counter", lambda: clock.now)
    timed = P.time_steps(clock.step)
    assert timed["pairs"] == pairs and len(clock.calls) == 2 + 2 * pairs  # two untimed warm-ups
    assert timed["fp32_s"] == pytest.approx(fp32) and timed["bf16_s"] == pytest.approx(bf16)
    assert clock.calls[:4] == [False, True, False, True]  # alternated


def test_the_log_line_says_what_was_chosen_and_both_timings() -> None:
    line = P.PrecisionChoice(torch.bfloat16, 1.166, 0.685, "probe").describe()
    assert "train.amp=auto: bf16" in line and "1166 ms in float32" in line and "685 ms in bf16" in line
    assert "1.70x" in line and "train.amp=bf16 or off forces it" in line
    assert "float32" in P.PrecisionChoice(None, 1.0, 1.0, "cache").describe().split("(")[0]
