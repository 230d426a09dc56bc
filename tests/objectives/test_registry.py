import pytest
import torch

from medssl.errors import ConfigError, RegistryError
from medssl.objectives import NNCLR, PNNCLR, PSM, SNCLR, SimCLR
from medssl.objectives.neighbours import NNSelector, PseudoNNSelector, TopKSelector
from medssl.registry import OBJECTIVES
from objective_helpers import filled_support, outputs

CLASSES = {"simclr": SimCLR, "nnclr": NNCLR, "pnnclr": PNNCLR, "snclr": SNCLR, "psm": PSM}


def test_all_objectives_registered():
    assert set(CLASSES) <= set(OBJECTIVES.names())
    for name, cls in CLASSES.items():
        assert isinstance(OBJECTIVES.build({"name": name}), cls)


def test_build_passes_kwargs():
    obj = OBJECTIVES.build({"name": "pnnclr", "alpha": 0.1})
    assert obj.selector.alpha == 0.1 and obj.alpha == 0.1
    assert OBJECTIVES.build({"name": "psm", "sampler": "band", "band_drop": 8}).band_drop == 8


def test_flags_tell_the_builder_what_to_create():
    flags = {n: (c.requirements.predictor, c.requirements.target, c.requirements.support_set)
             for n, c in CLASSES.items()}
    assert flags == {
        "simclr": (False, False, False),
        "nnclr": (True, False, True),
        "pnnclr": (True, True, True),
        "snclr": (True, True, True),
        "psm": (True, True, True),
    }


def test_default_selectors():
    assert isinstance(NNCLR().selector, NNSelector)
    assert isinstance(PNNCLR().selector, PseudoNNSelector)
    assert isinstance(SNCLR().selector, TopKSelector) and SNCLR().selector.k == 30
    assert isinstance(PSM().selector, TopKSelector) and PSM().selector.k == 5


def test_unknown_option_names_the_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'alpah' in objective 'pnnclr'\. Did you mean 'alpha'\?"):
        OBJECTIVES.build({"name": "pnnclr", "alpah": 0.1})


def test_unknown_objective_name():
    with pytest.raises(RegistryError, match="unknown objective 'pnnclrr'.*'pnnclr'"):
        OBJECTIVES.build({"name": "pnnclrr"})


def test_neighbours_mapping_needs_name():
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        OBJECTIVES.build({"name": "snclr", "neighbours": {"k": 3}})
    with pytest.raises(ConfigError, match="neighbour name or a mapping with 'name'"):
        OBJECTIVES.build({"name": "snclr", "neighbours": 3})


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_objective_returns_loss_and_float_diagnostics(name):
    kwargs = {"dim": 8, "attn_dim": 4, "k": 3} if name == "snclr" else ({"k": 3} if name == "psm" else {})
    obj = OBJECTIVES.build({"name": name, **kwargs})
    out = outputs(b=4, d=8)
    for f in ("z", "p", "t"):
        setattr(out, f, [v.detach().float().requires_grad_(True) for v in getattr(out, f)])
    support = filled_support(8, 8, size=32) if obj.requirements.support_set else None
    loss, diag = obj(out, support, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert diag["loss"] == pytest.approx(loss.item()) and "emb_std" in diag
    assert all(isinstance(v, float) for v in diag.values())
    if obj.requirements.support_set:
        assert "nn_purity" in diag and "nn_same_image" in diag
