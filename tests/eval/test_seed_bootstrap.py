"""The vectorised seed-mean bootstrap equals the metrics it stands for, resample by resample."""

import numpy as np
import pytest

from medssl.eval.metrics import accuracy, auc, balanced_accuracy, bootstrap_ci
from medssl.eval.seed_bootstrap import (bootstrap_seed_means, paired_summary, percentile_ci, resample_counts,
                                        weighted_metrics)
from medssl.eval.validate import check_predictions

FNS = {"auc": auc, "accuracy": accuracy, "balanced_accuracy": balanced_accuracy}


def _data(task: str, n: int = 60, c: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    if task == "multilabel":
        y = rng.integers(0, 2, size=(n, c))
        s = np.round(rng.random((n, c)), 1)  # rounded: many ties
    else:
        k = 2 if task == "binary" else c
        y = rng.integers(0, k, size=n)
        s = rng.dirichlet(np.ones(k), size=n).round(2)
    return y, s


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_weighted_metrics_equal_the_metrics_of_the_resampled_arrays(task: str) -> None:
    y, s = _data(task)
    yc, sc, t = check_predictions(y, s, task)
    rng = np.random.default_rng(1)
    idx = [np.arange(len(y))] + [rng.integers(0, len(y), len(y)) for _ in range(3)]
    w = np.stack([np.bincount(i, minlength=len(y)) for i in idx]).astype(float)
    got = weighted_metrics(yc, sc, t, w)
    for m, fn in FNS.items():
        want = [fn(y[i], s[i], task) for i in idx]
        np.testing.assert_allclose(got[m], want, rtol=0, atol=1e-12, err_msg=m)


def test_one_seed_ci_is_bootstrap_ci_of_the_same_stream() -> None:
    y, s = _data("multiclass", n=80)
    _, _, boots = bootstrap_seed_means(y, [[s]], "multiclass", n_boot=200, seed=7)
    ref = bootstrap_ci(lambda a, b: auc(a, b, "multiclass"), y, s, n_boot=200, seed=7)
    lo, hi, n = percentile_ci(boots["auc"][0])
    assert n == 200 and lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)


def test_seed_means_and_paired_difference() -> None:
    y, a0 = _data("binary", seed=2)
    a1, b0, b1 = (_data("binary", seed=k)[1] for k in (3, 4, 5))
    point, per_seed, boots = bootstrap_seed_means(y, [[a0, a1], [b0, b1]], "binary", n_boot=50, seed=0)
    assert point["auc"][0] == pytest.approx((auc(y, a0, "binary") + auc(y, a1, "binary")) / 2, abs=1e-12)
    d = paired_summary(boots["auc"][1], boots["auc"][0], per_seed["auc"][1], per_seed["auc"][0])
    assert d["difference"] == pytest.approx(point["auc"][1] - point["auc"][0], abs=1e-12)
    assert d["ci"][0] <= d["difference"] <= d["ci"][1]
    same = paired_summary(boots["auc"][0], boots["auc"][0], per_seed["auc"][0], per_seed["auc"][0])
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0] and same["sd_over_seeds"] == 0


def test_resample_counts_are_stratified_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    import medssl.eval.seed_bootstrap as sb

    y = np.repeat([0, 1, 2], [5, 10, 20])
    monkeypatch.setattr(sb, "CHUNK_CELLS", 35 * 4)  # 4 resamples a chunk
    chunks = list(resample_counts(y, 10, seed=0))
    assert [c.shape for c in chunks] == [(4, 35), (4, 35), (2, 35)]
    w = np.concatenate(chunks)
    np.testing.assert_array_equal(w[:, y == 0].sum(1), 5)  # every resample keeps the class counts
    np.testing.assert_array_equal(w[:, y == 2].sum(1), 20)


def test_seed_mean_ci_equals_the_single_runs_pooled_interval() -> None:
    """The panel's interval is the one report.md of a single run shows (medssl.eval.seeds)."""
    from medssl.eval.seeds import pooled_bootstrap_ci

    y, s0 = _data("multiclass", n=70, seed=8)
    s1 = _data("multiclass", n=70, seed=9)[1]
    _, _, boots = bootstrap_seed_means(y, [[s0, s1]], "multiclass", n_boot=100, seed=3)
    ref = pooled_bootstrap_ci(y, [s0, s1], "multiclass", n_boot=100, seed=3)
    for m in ("auc", "accuracy"):
        lo, hi, _ = percentile_ci(boots[m][0])
        assert [lo, hi] == pytest.approx(ref[m]["ci"], abs=1e-12), m
