"""Recipe options of the support-set objectives (issue 27): a SimCLR warm-up before the
neighbours (``neighbour_warmup_steps``), an instance term that fades (``instance_schedule``
``linear`` / ``purity``, the latter driven by the label-free view agreement), NNCLR's queue
from an EMA target (``queue_source: target``) and a queue sized by the data set."""

from __future__ import annotations

import pytest
import torch

from medssl.errors import ConfigError
from medssl.models.outputs import ViewOutputs
from medssl.objectives.instance_schedule import AGREEMENT_MOMENTUM, view_agreement
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES
from medssl.train.config import SupportSetConfig
from objective_helpers import filled_support, nt_xent_ref, outputs, unit

D = 8
OPTIONS = {"nnclr": {}, "pnnclr": {}, "snclr": {"k": 2, "dim": D, "attention": "cosine"}, "psm": {"k": 2, "n_neg": 8}}


def _build(name: str, **options):
    return OBJECTIVES.build({"name": name, "seed": 1, **OPTIONS[name], **options}).double()


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_the_warm_up_is_simclr_alone_and_fills_the_queue(name: str) -> None:
    obj = _build(name, neighbour_warmup_steps=2, instance_tau=0.5)  # SimCLR's loss, instance term or not
    support = filled_support(8, D, size=32)
    for step in range(2):
        out = outputs(b=4, d=D, seed=3 + step)
        loss, diag = obj(out, support)
        assert float(loss.detach()) == pytest.approx(nt_xent_ref(out.z[0], out.z[1], 0.5), rel=1e-10)
        assert diag["neighbour_warmup"] == 1.0 and diag["cold_start"] == 1.0 and "nn_purity" not in diag
        loss.backward()
        assert out.p[0].grad is not None  # the predictor stays in the graph (zero gradient): DDP needs it
    assert len(support) == 16 and int(obj.schedule.steps_seen) == 2
    _, diag = obj(outputs(b=4, d=D, seed=9), support)
    assert "neighbour_warmup" not in diag and diag["cold_start"] == 0.0 and "nn_purity" in diag
    # evaluation-mode calls neither warm up nor count
    fresh = _build(name, neighbour_warmup_steps=5).eval()
    _, diag = fresh(outputs(b=4, d=D, seed=3), filled_support(8, D, size=32))
    assert "neighbour_warmup" not in diag and int(fresh.schedule.steps_seen) == 0


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_linear_schedule_fades_the_instance_term_to_zero(name: str) -> None:
    obj = _build(name, instance_weight=1.0, instance_tau=0.5, instance_schedule="linear", instance_fade_steps=4)
    ref = _build(name)  # the objective's own terms, no instance term
    weights = []
    for step in range(6):
        out = outputs(b=4, d=D, seed=3)
        support = filled_support(8, D, size=16)
        loss, diag = obj(out, support)
        own, _ = ref(out, filled_support(8, D, size=16))
        w = diag["instance_weight"]
        weights.append(w)
        expect = float(own.detach()) + (w * nt_xent_ref(out.z[0], out.z[1], 0.5) if w > 0 else 0.0)
        assert float(loss.detach()) == pytest.approx(expect, rel=1e-9)
    assert weights == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_view_agreement_counts_images_not_rows() -> None:
    indices = torch.tensor([5, 5, 7, -1, -1])
    rows_a = torch.tensor([0, 2, 3, 3])
    rows_b = torch.tensor([1, 2, 3, 4])  # same image / same row / same unknown row / two unknown rows
    assert view_agreement(rows_a, rows_b, indices) == pytest.approx(3 / 4)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_the_purity_schedule_fades_with_the_views_agreement(name: str) -> None:
    obj = _build(name, instance_weight=1.0, instance_schedule="purity")
    out = outputs(b=4, d=D, seed=3)
    support = filled_support(8, D, size=64)
    expected_w, smoothed = 1.0, 0.0
    for _ in range(3):
        _, diag = obj(out, support)
        assert diag["instance_weight"] == pytest.approx(expected_w)
        a = diag["view_agreement"]
        assert 0.0 <= a <= 1.0
        smoothed = AGREEMENT_MOMENTUM * smoothed + (1 - AGREEMENT_MOMENTUM) * a
        expected_w = 1.0 - smoothed
    assert float(obj.schedule.agreement) == pytest.approx(smoothed)


def test_views_that_agree_lower_the_weight() -> None:
    """Both views of every image find the same stored image: agreement 1, weight falls."""
    b = 4
    z = unit(b, D, 11)
    out = ViewOutputs(z=[z.clone().requires_grad_(True), (z + 1e-3).requires_grad_(True)],
                      p=[unit(b, D, 12, grad=True), unit(b, D, 13, grad=True)], t=None,
                      indices=torch.arange(b) + 100, labels=None)
    support = SupportSet(8, D)
    support.enqueue(torch.cat([z, unit(b, D, 14)]).float(), indices=torch.arange(8))
    obj = _build("nnclr", instance_weight=1.0, instance_schedule="purity")
    _, diag = obj(out, support)
    assert diag["view_agreement"] == 1.0 and float(obj.schedule.agreement) == pytest.approx(0.1)


def test_schedule_state_is_saved_only_when_used() -> None:
    assert not any("schedule" in k for k in _build("pnnclr").state_dict())
    obj = _build("pnnclr", instance_schedule="purity", neighbour_warmup_steps=1, instance_weight=1.0)
    for seed in range(3):
        obj(outputs(b=4, d=D, seed=seed), filled_support(8, D, size=16))
    again = _build("pnnclr", instance_schedule="purity", neighbour_warmup_steps=1, instance_weight=1.0)
    again.load_state_dict(obj.state_dict())
    assert int(again.schedule.steps_seen) == 3
    assert float(again.schedule.agreement) == float(obj.schedule.agreement)


@pytest.mark.parametrize("options, match", [({"instance_schedule": "cosine"}, "instance_schedule"),
                                            ({"instance_schedule": "linear", "instance_weight": 1.0},
                                             "instance_fade_steps"),
                                            ({"instance_schedule": "purity"}, "instance_weight is 0"),
                                            ({"neighbour_warmup_steps": -1}, "neighbour_warmup_steps")])
def test_bad_schedule_options_are_config_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OBJECTIVES.build({"name": "snclr", **options})


def test_nnclr_can_fill_its_queue_from_an_ema_target() -> None:
    obj = _build("nnclr", queue_source="target")
    assert obj.requirements.target and not _build("nnclr").requirements.target
    out = outputs(b=4, d=D, seed=3)
    support = SupportSet(16, D)
    obj(out, support)
    torch.testing.assert_close(support.embeddings[:4].double(), torch.nn.functional.normalize(out.t[0], dim=1),
                               atol=1e-6, rtol=0)


def test_a_queue_sized_by_the_data_set() -> None:
    assert SupportSetConfig(size=4096).rows_for(11959) == 4096
    assert SupportSetConfig(size_fraction=0.25).rows_for(11959) == 2990
    assert SupportSetConfig(size_fraction=1e-9).rows_for(100) == 1
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="size_fraction"):
            SupportSetConfig(size_fraction=bad)
