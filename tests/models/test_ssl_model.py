"""SSLModel: outputs per view, normalisation, target without gradient, EMA update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medssl.errors import ConfigError
from medssl.models import build_backbone, build_ssl_model
from medssl.models.heads import ProjectionHead
from medssl.models.ssl_model import SSLModel
from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Objective, Requirements


class _Plain(Objective):
    pass


class _PredTarget(Objective):
    requirements = Requirements(predictor=True, target=True)


def _model(objective: type = _PredTarget) -> SSLModel:
    torch.manual_seed(0)
    backbone = build_backbone("test_resnet", in_chans=1, image_size=16)
    return build_ssl_model(backbone, objective, proj_hidden=32, proj_dim=8, pred_hidden=16)


def _views(b: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(b, 1, 16, 16, generator=g) for _ in range(2)]


def test_outputs_shapes_normalised_and_passthrough() -> None:
    m = _model()
    idx, lab = torch.arange(4), torch.tensor([0, 1, -1, 1])
    out = m(_views(), indices=idx, labels=lab)
    assert isinstance(out, ViewOutputs) and out.batch_size == 4
    for group in (out.z, out.p, out.t):
        assert len(group) == 2
        for x in group:
            assert x.shape == (4, 8) and x.dtype == torch.float32
            torch.testing.assert_close(x.norm(dim=1), torch.ones(4))
    assert out.z[0].requires_grad and out.p[0].requires_grad
    assert not out.t[0].requires_grad
    assert out.indices is idx and out.labels is lab


def test_concatenated_batch_equals_eval_per_view() -> None:
    # In eval mode BatchNorm uses running stats, so concatenation must not change results.
    m = _model().eval()
    views = _views()
    out = m(views)
    for v, z in zip(views, out.z):
        single = m([v]).z[0]
        torch.testing.assert_close(single, z, atol=1e-5, rtol=1e-4)
    # The target starts as an exact copy: t equals z at step 0.
    torch.testing.assert_close(out.t[0], out.z[0])


def test_predictor_and_target_only_when_asked() -> None:
    m = _model(_Plain)
    out = m(_views())
    assert m.predictor is None and m.target is None and out.p is None and out.t is None
    assert m.update_target(0, 10) is None
    assert m.encoder is m.backbone


def test_gradient_does_not_reach_target_and_update_moves_it() -> None:
    m = _model()
    opt = torch.optim.SGD(m.online_parameters(), lr=0.5)
    assert len(opt.param_groups[0]["params"]) == sum(1 for p in m.parameters() if p.requires_grad)
    out = m(_views())
    loss = -(out.p[0] * out.t[1]).sum() - (out.z[0] * out.z[1]).sum()
    loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    assert m.backbone.conv1[0].weight.grad is not None
    before = m.target.module[0].conv1[0].weight.clone()
    opt.step()
    lam = m.update_target(0, 10)
    assert lam == pytest.approx(0.99)
    expected = lam * before + (1 - lam) * m.backbone.conv1[0].weight
    torch.testing.assert_close(m.target.module[0].conv1[0].weight, expected)


def test_state_dict_keys_not_duplicated() -> None:
    keys = list(_model().state_dict())
    assert any(k.startswith("target.module.0.") for k in keys)
    assert not any(k.startswith("target.module.2.") for k in keys)  # no predictor copy
    n_online = sum(k.startswith(("backbone.", "projector.")) for k in keys)
    assert n_online == sum(k.startswith("target.") for k in keys)


def test_bad_backbone_and_empty_views() -> None:
    with pytest.raises(ConfigError, match="num_features"):
        build_ssl_model(nn.Linear(3, 3), _Plain)
    m = SSLModel(nn.Flatten(), ProjectionHead(4, 8, 4))
    with pytest.raises(ValueError, match="at least one view"):
        m([])


def test_views_of_different_sizes_run_separately() -> None:
    m = _model()
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 12, 12)]
    out = m(views)
    assert [z.shape for z in out.z] == [(4, 8), (4, 8)] and len(out.t) == 2


def test_bf16_autocast_gives_float32_unit_rows() -> None:
    m = _model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(_views())
    assert out.p[0].dtype == torch.float32
    torch.testing.assert_close(out.p[0].norm(dim=1), torch.ones(4))


def test_per_view_bn_normalises_each_view_with_its_own_batch_statistics() -> None:
    # Train mode: a per-view model equals running the same modules on one view at a time,
    # and differs from the default concatenated batch (statistics over both views).
    joint = _model().train()
    per_view = _model().train()
    per_view.per_view_bn = True
    views = [_views()[0], _views()[1] * 3.0 + 1.0]  # views with different statistics
    out = per_view(views)
    for i, v in enumerate(views):
        single = per_view([v])
        torch.testing.assert_close(out.z[i], single.z[0])
        torch.testing.assert_close(out.p[i], single.p[0])
        torch.testing.assert_close(out.t[i], single.t[0])
    together = joint(views)
    assert not torch.allclose(together.z[0], out.z[0], atol=1e-3)


def test_per_view_bn_from_the_builder_and_equal_in_eval_mode() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("test_resnet", in_chans=1, image_size=16)
    m = build_ssl_model(backbone, _PredTarget, proj_hidden=32, proj_dim=8, pred_hidden=16, per_view_bn=True)
    assert m.per_view_bn
    # running statistics are used in eval mode, so the batching makes no difference there
    views = _views()
    ref = _model().eval()(views)
    out = m.eval()(views)
    for a, b in zip(out.z + out.p + out.t, ref.z + ref.p + ref.t):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_predictor_false_makes_the_projections_the_predictions() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("test_resnet", in_chans=1, image_size=16)
    m = build_ssl_model(backbone, _PredTarget, proj_hidden=32, proj_dim=8, pred_hidden=16, predictor=False)
    assert isinstance(m.predictor, nn.Identity)
    out = m(_views())
    for z, p in zip(out.z, out.p):
        assert p is z  # the same unit rows, so the loss's gradient reaches the projector directly
    assert out.t is not None  # the target network does not depend on the predictor
    # the head's parameters are gone from what the optimiser trains
    with_head = _model()
    n_params = sum(p.numel() for p in m.online_parameters())
    assert n_params == sum(p.numel() for p in with_head.online_parameters()) - sum(
        p.numel() for p in with_head.predictor.parameters())


def test_predictor_auto_follows_the_objective_and_true_is_refused_without_predictions() -> None:
    backbone = build_backbone("test_resnet", in_chans=1, image_size=16)
    assert build_ssl_model(backbone, _Plain, proj_hidden=32, proj_dim=8).predictor is None
    assert build_ssl_model(backbone, _PredTarget, proj_hidden=32, proj_dim=8, pred_hidden=16,
                           predictor=True).predictor is not None
    with pytest.raises(ConfigError, match="never reads predictions"):
        build_ssl_model(backbone, _Plain, proj_hidden=32, proj_dim=8, predictor=True)
    with pytest.raises(ConfigError, match="model.predictor must be auto, true or false"):
        build_ssl_model(backbone, _PredTarget, proj_hidden=32, proj_dim=8, predictor="no")
