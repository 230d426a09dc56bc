import math

import pytest
import torch

from medssl.errors import ConfigError
from medssl.objectives.functional import ce_rows
from medssl.objectives.psm import (
    PSM,
    band_probability,
    psm_view_loss,
    sample_negatives_band,
    sample_negatives_gaussian,
    soft_positive_weights,
)
from medssl.objectives.support_set import SupportSet
from objective_helpers import filled_support, outputs, unit


def test_soft_positive_weights_match_loop():
    t = unit(3, 8, 0)
    mined = torch.stack([unit(3, 8, 1 + j) for j in range(4)], 1)
    w = soft_positive_weights(t, mined, 0.1)
    for b in range(3):
        e = [math.exp(float(t[b] @ mined[b, j]) / 0.1) for j in range(4)]
        assert [float(x) for x in w[b]] == pytest.approx([x / sum(e) for x in e])


def test_band_probability_shape_of_the_band():
    s_pos = torch.tensor([0.8])
    s = torch.tensor([[0.7, 0.8, 0.6, 0.2]])
    pi = band_probability(s, s_pos, a=0.1, delta=0.1)
    assert float(pi[0, 0]) == pytest.approx(1.0)  # exactly at s+ - delta
    assert float(pi[0, 1]) == pytest.approx(math.exp(-0.5))  # one width a above
    assert float(pi[0, 2]) == pytest.approx(math.exp(-0.5))  # one width a below
    assert float(pi[0, 3]) == pytest.approx(math.exp(-12.5))  # easy negative (4a below): ~never kept


def test_gaussian_sampler_is_seeded_respects_eligibility_and_cap():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(4, 50, generator=g) * 2 - 1
    s_pos = torch.full((4,), 0.5)
    eligible = torch.ones(4, 50, dtype=torch.bool)
    eligible[:, :10] = False
    run = lambda seed, **kw: sample_negatives_gaussian(  # noqa: E731
        s, s_pos, eligible, generator=torch.Generator().manual_seed(seed), **kw)
    idx_a, valid_a = run(1, a=0.2)
    idx_b, valid_b = run(1, a=0.2)
    assert torch.equal(idx_a, idx_b) and torch.equal(valid_a, valid_b)
    assert (idx_a[valid_a] >= 10).all()
    # A very wide band keeps every eligible row; the cap then limits the count.
    _, valid_all = run(2, a=100.0)
    assert valid_all.sum(1).tolist() == [40] * 4
    idx_c, valid_c = run(2, a=100.0, n_neg=7)
    assert idx_c.shape == (4, 7) and valid_c.all()
    assert all(len(set(r.tolist())) == 7 for r in idx_c)  # without replacement
    # A narrow band keeps only rows near s+ - delta = 0.4.
    idx_n, valid_n = run(3, a=0.02)
    assert ((s.gather(1, idx_n)[valid_n] - 0.4).abs() < 0.15).all()


def test_band_sampler_keeps_rank_band():
    s = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3, 0.8]])
    eligible = torch.tensor([[True, True, True, False, True, True]])
    idx, valid = sample_negatives_band(s, eligible, drop=1, keep=2)
    assert idx.tolist() == [[5, 2]] and valid.all()  # ranking 0(.9) 5(.8) 2(.5) 4(.3) 1(.1); row 3 ineligible
    idx, valid = sample_negatives_band(s, eligible, drop=3, keep=5)
    assert idx[valid].tolist() == [4, 1]


def _loop_psm(p, t, mined, omega, queue, idx, valid, tau, w_hard, w_soft, batch_neg):
    b, k = mined.shape[0], mined.shape[1]
    total_h = total_s = 0.0
    for a in range(b):
        cands = [float(p[a] @ t[a]) / tau]  # hard positive first
        cands += [float(p[a] @ t[j]) / tau for j in range(b) if j != a and batch_neg]
        soft = [float(p[a] @ mined[a, j]) / tau for j in range(k)]
        negs = [float(p[a] @ queue[int(idx[a, n])]) / tau for n in range(idx.shape[1]) if valid[a, n]]
        allc = cands + soft + negs
        lse = math.log(sum(math.exp(x) for x in allc))
        total_h += lse - cands[0]
        total_s += sum(float(omega[a, j]) * (lse - soft[j]) for j in range(k))
    lh, ls = total_h / b, total_s / b
    return w_hard * lh + w_soft * ls, lh, ls


@pytest.mark.parametrize("batch_neg", [True, False])
def test_view_loss_matches_loop(batch_neg):
    b, k, d, m = 4, 3, 8, 10
    p, t, queue = unit(b, d, 0), unit(b, d, 1), unit(m, d, 2)
    mined = torch.stack([unit(b, d, 3 + j) for j in range(k)], 1)
    omega = soft_positive_weights(t, mined, 0.1)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, m, (b, 5), generator=g)
    valid = torch.rand(b, 5, generator=g) > 0.3
    loss, lh, ls = psm_view_loss(p, t, mined, omega, queue, idx, valid, tau=0.2, w_hard=1.0, w_soft=0.5,
                                 batch_negatives=batch_neg)
    ref = _loop_psm(p, t, mined, omega, queue, idx, valid, 0.2, 1.0, 0.5, batch_neg)
    assert [float(loss), float(lh), float(ls)] == pytest.approx(list(ref), rel=1e-10)


def _float(out):
    for f in ("z", "p", "t"):
        setattr(out, f, [v.detach().float().requires_grad_(True) for v in getattr(out, f)])
    return out


def test_forward_mines_before_enqueue_and_stores_t2():
    out = _float(outputs(b=6, d=8, t_grad=True))
    support = filled_support(20, 8, size=64)
    before = support.embeddings[:20].clone()
    obj = PSM(k=3, seed=0)
    loss, diag = obj(out, support)
    assert len(support) == 26 and torch.allclose(support.embeddings[20:26], out.t[1].detach(), atol=1e-6)
    assert torch.equal(support.embeddings[:20], before)
    assert diag["nn_same_image"] == 0.0  # enqueued after the look-ups: no self-hits
    assert diag["cold_start"] == 0.0
    assert {"loss_hard", "loss_soft", "mined_purity", "nn_same_image", "neg_sim_mean", "neg_kept", "emb_std"} <= set(diag)
    loss.backward()
    assert out.t[0].grad is None and out.t[1].grad is None and not support.embeddings.requires_grad
    assert out.p[0].grad.abs().sum() > 0 and out.p[1].grad.abs().sum() > 0
    # Same seed, same state: the same negatives and the same loss.
    loss2, _ = PSM(k=3, seed=0)(_float(outputs(b=6, d=8)), filled_support(20, 8, size=64))
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)


def test_mined_positives_are_never_negatives():
    out = _float(outputs(b=4, d=8))
    support = filled_support(12, 8, size=32)
    obj = PSM(k=3, sampler="band", band_drop=0, n_neg=100)
    queue = support.embeddings[:12]
    p, t = out.p[0], out.t[1].detach()
    rows = (t @ queue.t()).topk(3, dim=1).indices
    idx, valid = obj._negatives(p, t, queue, rows, None)
    for b in range(4):
        kept = set(idx[b][valid[b]].tolist())
        assert kept.isdisjoint(rows[b].tolist()) and len(kept) == 9


def test_cold_start_is_in_batch_infonce():
    out = _float(outputs(b=5, d=8))
    support = SupportSet(32, 8)
    loss, diag = PSM(k=3, w_hard=2.0, batch_negatives=False)(out, support)
    p1, p2 = out.p
    t1, t2 = out.t
    ref = 2.0 * 0.5 * (ce_rows(p1 @ t2.t() / 0.2) + ce_rows(p2 @ t1.t() / 0.2))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert diag["cold_start"] == 1.0 and diag["loss_soft"] == 0.0 and len(support) == 5


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"tau": 0.0}, "tau must be > 0, got 0.0"),
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"tau_w": -1}, "tau_w must be > 0"),
        ({"sampler": "uniform"}, "sampler must be one of gaussian, band, got 'uniform'"),
        ({"a": 0}, "a must be > 0, got 0"),
        ({"n_neg": 0}, "n_neg must be an integer >= 1"),
        ({"neighbours": "nope"}, "unknown neighbour 'nope'"),
    ],
)
def test_config_errors(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        PSM(**kwargs)
