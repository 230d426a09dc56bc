import math

import numpy as np
import pytest
import torch

from medssl.errors import ConfigError, EvaluationError
from medssl.eval.knn import knn_evaluate, knn_predict


def knn_loop(train, labels, query, k, t, c, exclude_self=False):
    """Reference: one query at a time, neighbours by sorting cosine similarities."""
    out = np.zeros((len(query), c))
    for i, q in enumerate(query):
        sims = []
        for j, x in enumerate(train):
            if exclude_self and i == j:
                continue
            sims.append((float(q @ x / (np.linalg.norm(q) * np.linalg.norm(x))), j))
        sims.sort(reverse=True)
        total = 0.0
        for sim, j in sims[:k]:
            w = math.exp(sim / t)
            target = np.eye(c)[labels[j]] if np.ndim(labels[j]) == 0 else labels[j]
            out[i] += w * target
            total += w
        out[i] /= total
    return out


def data(n=60, m=17, d=8, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g),
            torch.randn(m, d, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("chunk", [1, 5, 1024])
def test_matches_loop_reference_for_any_chunk_size(chunk):
    train, y, query = data()
    got = knn_predict(train, y, query, k=7, temperature=0.1, num_classes=4, chunk_size=chunk)
    ref = knn_loop(train.numpy(), y.numpy(), query.numpy(), 7, 0.1, 4)
    assert got.shape == (17, 4) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, atol=1e-6)


def test_exclude_self_matches_leave_one_out_loop():
    train, y, _ = data(n=30)
    got = knn_predict(train, y, train, k=5, temperature=0.07, exclude_self=True, chunk_size=8)
    ref = knn_loop(train.numpy(), y.numpy(), train.numpy(), 5, 0.07, 4, exclude_self=True)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    # without exclusion, each point is its own nearest neighbour (sim 1) and dominates
    own = knn_predict(train, y, train, k=5, temperature=0.01)
    assert torch.equal(own.argmax(1), y)


def test_multilabel_targets_give_weighted_label_means():
    train, _, query = data(n=40)
    y = (torch.rand(40, 3, generator=torch.Generator().manual_seed(1)) < 0.4).long()
    got = knn_predict(train, y, query, k=6, temperature=0.2)
    ref = knn_loop(train.numpy(), y.numpy().astype(float), query.numpy(), 6, 0.2, 3)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)


def test_scale_invariance_k_clamp_and_numpy_inputs():
    train, y, query = data(n=10)
    a = knn_predict(train, y, query, k=50, num_classes=4)  # k > N uses all N
    b = knn_predict(train.numpy() * 3.0, y.numpy()[:, None], query.numpy() * 0.5, k=10, num_classes=4)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_tiny_temperature_does_not_overflow():
    train, y, query = data()
    s = knn_predict(train, y, query, k=20, temperature=1e-4)
    assert torch.isfinite(s).all()


def test_knn_evaluate_on_separable_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 16) * 10
    y = torch.arange(3).repeat_interleave(20)
    train = centres[y] + torch.randn(60, 16, generator=g)
    yq = torch.arange(3).repeat(5)
    query = centres[yq] + torch.randn(15, 16, generator=g)
    res = knn_evaluate(train, y, query, yq, task="multiclass", k=10)
    assert res["top1"] == 1.0 and res["auc"] == 1.0
    assert res["protocol"]["k"] == 10 and res["protocol"]["similarity"] == "cosine"
    assert res["num_classes"] == 3


def test_knn_evaluate_binary_reports_two_columns():
    train, _, query = data(n=50, m=20)
    y = (train[:, 0] > 0).long()
    yq = (query[:, 0] > 0).long()
    res = knn_evaluate(train, y, query, yq, task="binary", k=5)
    assert res["num_classes"] == 2 and res["top1"] > 0.6


def test_bad_inputs():
    train, y, query = data()
    with pytest.raises(EvaluationError, match="dimension 8 but query_emb has 3"):
        knn_predict(train, y, query[:, :3])
    with pytest.raises(ConfigError, match="k must be >= 1"):
        knn_predict(train, y, query, k=0)
    with pytest.raises(ConfigError, match="temperature"):
        knn_predict(train, y, query, temperature=0)
    bad = query.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(EvaluationError, match="NaN"):
        knn_predict(train, y, bad)
    with pytest.raises(EvaluationError, match="59 rows but train_emb has 60"):
        knn_predict(train, y[:59], query)
    with pytest.raises(EvaluationError, match="out of range for num_classes=2"):
        knn_predict(train, y, query, num_classes=2)
    with pytest.raises(ConfigError, match="exclude_self"):
        knn_predict(train, y, query, exclude_self=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    train, y, query = data(n=500, m=300, d=32)
    cpu = knn_predict(train.float(), y, query.float(), chunk_size=64)
    gpu = knn_predict(train.float().cuda(), y.cuda(), query.float().cuda(), chunk_size=64)
    assert gpu.is_cuda
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-5)
