import math

import pytest
import torch

from medssl.errors import ConfigError
from medssl.objectives.functional import ce_rows
from medssl.objectives.neighbours import PseudoNNSelector
from medssl.objectives.snclr import SNCLR, attention_probs, rescale_weights, snclr_view_loss
from medssl.objectives.support_set import SupportSet
from objective_helpers import filled_support, outputs, stored, unit


def _loop_snclr(p, t, nbrs, w, tau, form):
    """Mean over anchors of L_b with explicit loops over the candidate set A."""
    b, k = nbrs.shape[0], nbrs.shape[1]
    cands = [(j, None, t[j]) for j in range(b)] + [(j, i, nbrs[j, i]) for j in range(b) for i in range(k)]
    total = 0.0
    for a in range(b):
        e = {id(c): math.exp(float(p[a] @ c[2]) / tau) for c in cands}
        denom = sum(e.values())
        own = [(1.0 if i is None else float(w[a, i]), c) for c in cands for (j, i) in [c[:2]] if j == a]
        if form == "weighted_positive":
            total += -math.log(sum(wa * e[id(c)] for wa, c in own) / denom)
        else:
            total += -sum(wa * math.log(e[id(c)] / denom) for wa, c in own)
    return total / b


@pytest.mark.parametrize("form", ["weighted_positive", "soft_target"])
def test_view_loss_matches_loop(form):
    b, k, d = 4, 3, 8
    p, t = unit(b, d, 0), unit(b, d, 1)
    nbrs = torch.stack([unit(b, d, 2 + i) for i in range(k)], 1)
    w = torch.rand(b, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = snclr_view_loss(p, t, nbrs, w, 0.2, form)
    assert math.isclose(float(out), _loop_snclr(p, t, nbrs, w, 0.2, form), rel_tol=1e-10)


def test_view_loss_without_neighbours_is_infonce():
    p, t = unit(5, 8, 0), unit(5, 8, 1)
    empty = torch.zeros(5, 0, 8, dtype=torch.float64)
    out = snclr_view_loss(p, t, empty, torch.zeros(5, 0, dtype=torch.float64), 0.2)
    assert math.isclose(float(out), float(ce_rows(p @ t.t() / 0.2)), rel_tol=1e-12)


def test_attention_and_gamma():
    q, keys = unit(3, 4, 0), torch.stack([unit(3, 4, 1), unit(3, 4, 2)], 1)
    probs = attention_probs(q, keys, 0.5)
    for b in range(3):
        logits = [float(q[b] @ keys[b, i]) * 0.5 for i in range(2)]
        z = sum(math.exp(x) for x in logits)
        assert [float(v) for v in probs[b]] == pytest.approx([math.exp(x) / z for x in logits])
    assert torch.allclose(rescale_weights(probs, "max").max(1).values, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(rescale_weights(probs, 2.0), probs / 2.0)


def _float(out):
    for f in ("z", "p", "t"):
        setattr(out, f, [v.detach().float().requires_grad_(True) for v in getattr(out, f)])
    return out


def test_forward_matches_manual_topk_and_enqueues_t2():
    b, d, k = 5, 8, 4
    out = _float(outputs(b=b, d=d, t_grad=True))
    support = filled_support(12, d, size=40)
    bank = stored(support).float().clone()
    obj = SNCLR(k=k, dim=d, attn_dim=6)
    loss, diag = obj(out, support)
    y1, y2 = out.z
    p1, p2 = out.p
    t1, t2 = (v.detach() for v in out.t)
    n2 = bank[(t2 @ bank.t()).topk(k, dim=1).indices]
    n1 = bank[(t1 @ bank.t()).topk(k, dim=1).indices]
    w2 = rescale_weights(attention_probs(obj.f1(y1), obj.f2(n2), 1 / math.sqrt(6)))
    w1 = rescale_weights(attention_probs(obj.f1(y2), obj.f2(n1), 1 / math.sqrt(6)))
    ref = snclr_view_loss(p1, t2, n2, w2, 0.2) + snclr_view_loss(p2, t1, n1, w1, 0.2)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert len(support) == 12 + b
    assert torch.allclose(support.embeddings[12:12 + b], t2, atol=1e-6)
    assert diag["nn_same_image"] == 0.0  # enqueued after the look-ups: no self-hits
    assert 0 < diag["weight_entropy"] <= math.log(k) + 1e-6
    assert {"nn_purity", "nn_purity_weighted", "nn_same_image", "emb_std"} <= set(diag)
    loss.backward()
    assert out.t[0].grad is None and out.t[1].grad is None
    assert obj.f1.weight.grad.abs().sum() > 0 and obj.f2.weight.grad.abs().sum() > 0
    assert out.z[0].grad.abs().sum() > 0  # y1 reaches the loss through the attention


def test_detach_weights_stops_attention_gradient():
    out = _float(outputs(b=5, d=8))
    obj = SNCLR(k=3, dim=8, attn_dim=4, detach_weights=True)
    loss, _ = obj(out, filled_support(10, 8, size=30))
    loss.backward()
    assert obj.f1.weight.grad is None and obj.f2.weight.grad is None
    assert out.z[0].grad is None and out.p[0].grad.abs().sum() > 0


def test_cosine_attention_has_no_parameters():
    obj = SNCLR(k=3, dim=8, attention="cosine")
    assert list(obj.parameters()) == []
    loss, diag = obj(_float(outputs(b=4, d=8)), filled_support(6, 8, size=20))
    assert torch.isfinite(loss) and "weight_entropy" in diag


def test_cold_start_is_in_batch_infonce():
    out = _float(outputs(b=5, d=8))
    support = filled_support(2, 8, size=30)  # fewer rows than k
    loss, diag = SNCLR(k=3, dim=8)(out, support)
    p1, p2 = out.p
    t1, t2 = out.t
    ref = ce_rows(p1 @ t2.t() / 0.2) + ce_rows(p2 @ t1.t() / 0.2)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert diag["cold_start"] == 1.0 and "weight_entropy" not in diag
    assert len(support) == 7


def test_pseudo_neighbours_compose():
    obj = SNCLR(k=4, dim=8, neighbours={"name": "pnn", "alpha": 0.5, "beta": 0.0})
    assert isinstance(obj.selector, PseudoNNSelector) and obj.selector.k == 4 and obj.selector.alpha == 0.5
    loss, _ = obj(_float(outputs(b=4, d=8)), filled_support(8, 8, size=20))
    assert torch.isfinite(loss)


def test_dim_mismatch_is_clear():
    with pytest.raises(ConfigError, match="dim=16 but the projections have width 8"):
        SNCLR(k=2, dim=16)(_float(outputs(b=4, d=8)), filled_support(4, 8))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"tau": 0}, "tau must be > 0, got 0"),
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"gamma": "min"}, "gamma must be 'max' or a number > 0, got 'min'"),
        ({"gamma": -1.0}, "gamma must be > 0, got -1.0"),
        ({"attention": "dot"}, "attention must be one of linear, cosine, got 'dot'"),
        ({"loss_form": "nce"}, "loss_form must be one of weighted_positive, soft_target, got 'nce'"),
        ({"neighbours": "pnn2"}, "unknown neighbour 'pnn2'"),
    ],
)
def test_config_errors(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        SNCLR(**kwargs)
