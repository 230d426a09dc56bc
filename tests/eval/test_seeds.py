"""medssl.eval.seeds: one seed where seeds change nothing, and the interval of the mean over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medssl.eval.config import load_transfer_config
from medssl.eval.metrics import accuracy, auc, bootstrap_ci
from medssl.eval.seeds import (identical_predictions, pooled_bootstrap_ci, seed_invariance, seed_variation,
                               seeds_to_run)
from medssl.eval.transfer import run_transfer

from .transfer_helpers import export_tiny, ihc, quick_cfg


def _scores(rng: np.random.Generator, y: np.ndarray, c: int, noise: float) -> np.ndarray:
    logits = rng.normal(0, noise, (y.size, c))
    logits[np.arange(y.size), y] += 1.0
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def _reference(y: np.ndarray, scores: list, n_boot: int, seed: int, fn) -> tuple:
    """A plain loop: stratified resample of the test rows, the metric of every seed on it, averaged."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == k) for k in np.unique(y)]
    vals = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        vals.append(np.mean([fn(y[idx], s[idx]) for s in scores]))
    return tuple(np.quantile(vals, [0.025, 0.975]))


def test_pooled_interval_is_the_bootstrap_of_the_mean_over_seeds() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    scores = [_scores(rng, y, 3, noise) for noise in (0.8, 1.0, 1.4)]
    got = pooled_bootstrap_ci(y, scores, "multiclass", n_boot=200, seed=4)
    for key, fn in (("auc", lambda a, b: auc(a, b, "multiclass")),
                    ("accuracy", lambda a, b: accuracy(a, b, "multiclass"))):
        assert got[key]["ci"] == pytest.approx(list(_reference(y, scores, 200, 4, fn)), abs=1e-12)
        mean = np.mean([fn(y, s) for s in scores])
        assert got[key]["ci"][0] <= mean <= got[key]["ci"][1]


def test_one_seed_gets_its_own_interval() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    s = _scores(rng, y, 2, 1.0)
    one = pooled_bootstrap_ci(y, [s], "binary", n_boot=100, seed=7)
    own = bootstrap_ci(lambda a, b: auc(a, b, "binary"), y, s, 100, 0.05, 7)
    assert one["auc"]["ci"] == pytest.approx([own.low, own.high], abs=1e-12)


def test_which_protocols_seeds_change() -> None:
    y = np.repeat([0, 1, 2], 10)
    assert seed_invariance("knn", "auto", y, 30) == "the kNN vote has no random step"
    assert "fixed weight decay (0.01)" in seed_invariance("linear", 0.01, y, 30)
    assert "fixed weight decay" in seed_invariance("linear", [0.01], y, 30)
    for protocol, wd in (("linear", "auto"), ("linear", [0.1, 0.01]), ("finetune", "auto")):
        assert seed_invariance(protocol, wd, y, 30) is None
        assert seed_variation(protocol, wd, y, 30)
    assert seed_invariance("knn", "auto", y, 12) is None  # a subset: seeds draw different labels
    assert seed_variation("knn", "auto", y, 12) is None
    unlabelled = np.concatenate([y, [-1, -1]])  # -1 is never taken: 30 of 32 is still everything
    assert seed_invariance("knn", "auto", unlabelled, 30) is not None


def test_identical_predictions() -> None:
    a = np.eye(3)
    assert identical_predictions([a, a.copy(), a.copy()]) and not identical_predictions([a])
    assert not identical_predictions([a, a[::-1]])


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("enc"))


@pytest.mark.parametrize("extra", [{"protocol": "knn"}, {"protocol": "linear", "linear": {"weight_decay": 0.01}}],
                         ids=["knn", "linear-fixed-wd"])
def test_all_labels_and_a_deterministic_protocol_run_one_seed(enc: Path, sample_dir: Path, tmp_path: Path,
                                                              extra: dict) -> None:
    cfg = load_transfer_config(data=quick_cfg(enc, ihc(sample_dir), tmp_path / "t", label_fraction=1.0, seeds=3,
                                              **extra))
    rep = run_transfer(cfg, progress=False).report
    assert rep["protocol"]["seeds"] == [0] and rep["protocol"]["seeds_requested"] == [0, 1, 2]
    assert len(rep["per_seed"]) == 1
    assert any("3 seeds were asked for and one was run" in w for w in rep["warnings"])
    md = (tmp_path / "t" / "report.md").read_text()
    assert "± 0.000" not in md and "(n=3)" not in md and "95 % CI (test-set bootstrap)" in md


def test_seeds_that_draw_subsets_all_run_and_the_ci_is_of_the_mean(enc: Path, sample_dir: Path,
                                                                   tmp_path: Path) -> None:
    cfg = load_transfer_config(data=quick_cfg(enc, ihc(sample_dir), tmp_path / "t", protocol="knn", seeds=3))
    rep = run_transfer(cfg, progress=False).report
    assert rep["protocol"]["seeds"] == [0, 1, 2]
    agg = rep["aggregate"]
    for key in ("auc", "accuracy"):
        lo, hi = agg[key]["ci"]
        assert lo <= agg[key]["mean"] <= hi
        assert agg[key]["ci"] != rep["per_seed"][0]["metrics"][f"{key}_ci"]  # not seed 0's
    md = (tmp_path / "t" / "report.md").read_text()
    head = "| Metric | Mean ± SD across seeds | 95 % CI of the mean (test-set bootstrap pooled over the 3 seeds) |"
    assert head in md
    lo, hi = agg["auc"]["ci"]
    assert f"| AUC (ROC) | {agg['auc']['mean']:.3f} ± {agg['auc']['sd']:.3f} (n=3) | {lo:.3f} – {hi:.3f} |" in md
    for name, entry in agg["auc_per_class"].items():  # per class too: the mean, not seed 0's value
        assert f"| {entry['mean']:.3f} ± {entry['sd']:.3f} (n=3) |" in next(
            ln for ln in md.splitlines() if ln.startswith(f"| {name} |"))
    for r in rep["per_seed"]:  # each seed keeps its own interval in the per-seed table
        m = r["metrics"]
        assert (f"| {r['seed']} | {r['subset']['size']} | {m['auc']:.3f} | {m['auc_ci'][0]:.3f} – "
                f"{m['auc_ci'][1]:.3f} |") in md


def test_seeds_to_run_keeps_every_seed_when_the_probe_selects(enc: Path, sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_transfer_config(data=quick_cfg(enc, ihc(sample_dir), tmp_path / "t", protocol="linear",
                                              label_fraction=1.0, seeds=3))
    seeds, notes = seeds_to_run(cfg, np.repeat([0, 1, 2], 10))
    assert seeds == [0, 1, 2] and "differ only in the held-out split" in notes[0]
