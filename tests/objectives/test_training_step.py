"""One SGD step on a tiny timm backbone (test_resnet, 32 px) lowers each objective's loss on a fixed batch."""

import copy

import pytest
import torch
import torch.nn.functional as F

from medssl.models import build_backbone, build_ssl_model
from medssl.objectives.support_set import SupportSet
from medssl.registry import OBJECTIVES

DIM = 16
CONFIGS = {
    "simclr": {},
    "nnclr": {},
    "pnnclr": {"seed": 0},
    "snclr": {"k": 4, "dim": DIM, "attn_dim": 8},
    "psm": {"k": 3, "n_neg": 16, "seed": 0},
}


def _loss(model, objective, views, support, labels):
    out = model(views, indices=torch.arange(views[0].shape[0]), labels=labels)
    # A copy of the support set: the same look-ups before and after the step.
    return objective(out, copy.deepcopy(support), generator=torch.Generator().manual_seed(7))[0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_one_step_lowers_the_loss(name):
    torch.manual_seed(0)
    objective = OBJECTIVES.build({"name": name, **CONFIGS[name]})
    model = build_ssl_model(build_backbone("test_resnet", image_size=32), objective,
                            proj_hidden=32, proj_dim=DIM, pred_hidden=32)
    model.train()
    g = torch.Generator().manual_seed(1)
    views = [torch.rand(8, 3, 32, 32, generator=g) for _ in range(2)]
    labels = torch.arange(8) % 2
    support = SupportSet(64, DIM)
    support.enqueue(F.normalize(torch.randn(40, DIM, generator=g), dim=1), indices=torch.arange(40) + 100,
                    labels=torch.arange(40) % 2)
    params = list(model.online_parameters()) + list(objective.parameters())
    opt = torch.optim.SGD(params, lr=0.002)

    before = _loss(model, objective, views, support, labels)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = _loss(model, objective, views, support, labels)
    assert after.item() < before.item() - 1e-4, (name, before.item(), after.item())
