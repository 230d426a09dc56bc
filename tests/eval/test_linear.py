import numpy as np
import pytest

from conftest import shared_file
from medssl.errors import ConfigError, EvaluationError
from medssl.eval.linear import fit_linear, linear_probe


def clusters(n_per=30, c=3, d=10, sep=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d)) * sep
    y = np.repeat(np.arange(c), n_per)
    return (centres[y] + rng.standard_normal((y.size, d))).astype(np.float32), y


def test_separable_clusters_are_classified_perfectly():
    x, y = clusters(seed=0)
    xq, yq = clusters(n_per=10, seed=0)  # same centres; the noise rows are a prefix
    xq = xq + np.random.default_rng(9).standard_normal(xq.shape).astype(np.float32)
    res = linear_probe(x, y, xq, yq, "multiclass", weight_decay=[1e-2, 1e-3])
    assert res.scores.shape == (30, 3)
    np.testing.assert_allclose(res.scores.sum(1), 1.0, atol=1e-6)
    assert res.metrics["accuracy"] == 1.0 and res.metrics["auc"] == 1.0
    assert [r["weight_decay"] for r in res.selection] == [1e-2, 1e-3]
    assert res.weight_decay in (1e-2, 1e-3)
    assert res.metrics["protocol"]["selection"] == "lowest held-out loss"


def test_separable_binary_and_multilabel():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 6)).astype(np.float32)
    # keep a margin around both hyperplanes so the test set is separable like train
    x = x[(np.abs(x[:, 0] + x[:, 1]) > 0.3) & (np.abs(x[:, 2] - x[:, 3] - 0.5) > 0.3)][:300]
    yb = (x[:, 0] + x[:, 1] > 0).astype(int)
    res = linear_probe(x[:200], yb[:200], x[200:], yb[200:], "binary", weight_decay=1e-4)
    assert res.scores.shape == (100, 2) and res.metrics["accuracy"] == 1.0
    ym = np.stack([x[:, 0] + x[:, 1] > 0, x[:, 2] - x[:, 3] > 0.5], 1).astype(int)
    res = linear_probe(x[:200], ym[:200], x[200:], ym[200:], "multilabel", weight_decay=1e-4)
    assert res.scores.shape == (100, 2) and res.metrics["accuracy"] == 1.0
    assert res.metrics["protocol"]["loss"] == "sigmoid BCE"


def test_weight_decay_shrinks_weights():
    x, y = clusters(seed=2)
    weak = fit_linear(x, y, "multiclass", 3, 1e-4)
    strong = fit_linear(x, y, "multiclass", 3, 1.0)
    assert np.linalg.norm(strong.weight) < 0.5 * np.linalg.norm(weak.weight)


def test_seeded_runs_are_identical_and_seed_changes_the_split():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = (x[:, 0] + 0.8 * rng.standard_normal(200) > 0).astype(int) + (x[:, 1] > 1).astype(int)
    kw = dict(task="multiclass", weight_decay=[1e-1, 1e-3], seed=5)
    a = linear_probe(x[:150], y[:150], x[150:], y[150:], **kw)
    b = linear_probe(x[:150], y[:150], x[150:], y[150:], **kw)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.selection == b.selection
    c = linear_probe(x[:150], y[:150], x[150:], y[150:], **{**kw, "seed": 6})
    assert c.selection != a.selection


def test_tiny_train_set_falls_back_to_fixed_weight_decay():
    x, y = clusters(n_per=4, seed=4)  # 12 samples: 20 % held out is too few
    res = linear_probe(x, y, x, y, "multiclass")
    assert res.selection == [] and res.weight_decay == 1e-3
    assert any("held-out part too small" in w for w in res.metrics["warnings"])


def test_bloodmnist_raw_pixels_beat_chance():
    d = np.load(shared_file("medmnist/bloodmnist.npz"), allow_pickle=False)

    def pooled(imgs):  # 28x28x3 -> 7x7x3 mean-pooled pixels as "embeddings"
        return imgs.astype(np.float32).reshape(len(imgs), 7, 4, 7, 4, 3).mean((2, 4)).reshape(len(imgs), -1)

    tr = np.random.default_rng(0).choice(len(d["train_labels"]), 1500, replace=False)
    res = linear_probe(pooled(d["train_images"][tr]), d["train_labels"][tr],
                       pooled(d["test_images"][:800]), d["test_labels"][:800],
                       "multiclass", weight_decay=1e-2)
    counts = np.bincount(d["test_labels"][:800, 0], minlength=8)
    assert res.metrics["num_classes"] == 8
    # chance is 1/8 and the majority class is ~20 %; pixels alone reach ~70 %
    assert res.metrics["accuracy"] > max(0.5, counts.max() / counts.sum() + 0.25)
    assert res.metrics["auc"] > 0.85


def test_bad_inputs():
    x, y = clusters()
    with pytest.raises(EvaluationError, match="expected dimension 10"):
        linear_probe(x, y, x[:, :4], y, "multiclass", weight_decay=1e-2)
    with pytest.raises(EvaluationError, match="train 89 vs 90 rows"):
        linear_probe(x, y[:89], x, y, "multiclass", weight_decay=1e-2)
    with pytest.raises(ConfigError, match="weight_decay must be 'auto'"):
        linear_probe(x, y, x, y, "multiclass", weight_decay="best")
    with pytest.raises(ConfigError, match=">= 0"):
        linear_probe(x, y, x, y, "multiclass", weight_decay=-1.0)
    with pytest.raises(EvaluationError, match="out of range for num_classes=2"):
        linear_probe(x, y, x, y, "multiclass", num_classes=2, weight_decay=1e-2)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(EvaluationError, match="NaN or infinite"):
        linear_probe(bad, y, x, y, "multiclass", weight_decay=1e-2)
