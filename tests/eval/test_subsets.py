import logging

import numpy as np
import pytest

from conftest import shared_file
from medssl.errors import ConfigError, DataError, EvaluationError
from medssl.eval.subsets import load_indices, save_indices, stratified_fraction, stratified_fraction_plan


def imbalanced(seed=0):
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])
    return np.random.default_rng(seed).permutation(labels)


def test_fraction_is_stratified_exact_sorted_and_seeded():
    y = imbalanced()
    idx = stratified_fraction(y, 0.1, seed=0)
    assert idx.dtype == np.int64 and idx.size == 100
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.bincount(y[idx], minlength=4), [50, 30, 15, 5])
    np.testing.assert_array_equal(idx, stratified_fraction(y, 0.1, seed=0))
    assert not np.array_equal(idx, stratified_fraction(y, 0.1, seed=1))


def test_largest_remainder_hits_the_target_size():
    y = np.repeat(np.arange(3), [7, 7, 7])
    plan = stratified_fraction_plan(y, 0.5, seed=0)  # 0.5 x 21 = 10.5 rounds half up to 11
    assert plan.target == 11 and plan.indices.size == 11
    assert sorted(plan.taken.values()) == [3, 4, 4]


def test_larger_fraction_contains_smaller_with_same_seed():
    y = imbalanced()
    small = stratified_fraction(y, 0.1, seed=3)
    large = stratified_fraction(y, 0.3, seed=3)
    assert set(small.tolist()) <= set(large.tolist())


def test_min_per_class_dominates_tiny_fractions(caplog):
    y = np.repeat(np.arange(10), 30)
    with caplog.at_level(logging.WARNING, logger="medssl.eval.subsets"):
        idx = stratified_fraction(y, 0.01, seed=0)
    assert np.array_equal(np.bincount(y[idx], minlength=10), np.ones(10))
    assert "min_per_class=1 dominates: took 10 items instead of the target 3" in caplog.text
    assert stratified_fraction(y, 0.01, seed=0, min_per_class=0).size == 3


def test_class_smaller_than_min_per_class_is_taken_whole():
    y = np.array([0] * 100 + [1] * 2)
    plan = stratified_fraction_plan(y, 0.1, min_per_class=5)
    assert plan.taken == {"0": 10, "1": 2}
    assert any("fewer than min_per_class=5" in n and "1 (2)" in n for n in plan.notes)


def test_fraction_one_takes_every_labelled_item_and_skips_unlabelled():
    y = np.array([[0], [1], [-1], [1], [2], [-1]])  # MedMNIST (N, 1) layout with unlabelled
    plan = stratified_fraction_plan(y, 1.0)
    np.testing.assert_array_equal(plan.indices, [0, 1, 3, 4])
    assert any("2 unlabelled" in n for n in plan.notes)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, "0.1", None])
def test_fraction_outside_unit_interval_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="label fraction must be in"):
        stratified_fraction(np.zeros(10, int), bad)


def test_bad_labels_and_min_per_class():
    with pytest.raises(ConfigError, match="min_per_class"):
        stratified_fraction(np.zeros(10, int), 0.5, min_per_class=-1)
    with pytest.raises(EvaluationError, match="no labelled item"):
        stratified_fraction(np.full(10, -1), 0.5)
    with pytest.raises(EvaluationError, match="0 or 1"):
        stratified_fraction(np.full((10, 3), 2), 0.5)


def test_multilabel_strata_and_min_positives_per_label():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 5)) < [0.5, 0.3, 0.1, 0.02, 0.0]).astype(int)
    plan = stratified_fraction_plan(y, 0.02, seed=0)
    taken = y[plan.indices].sum(0)
    assert np.all(taken[:4] >= 1) and taken[4] == 0  # label 4 has no positive at all
    assert plan.indices.size >= plan.target == 8
    assert plan.class_counts["3"] == int(y[:, 3].sum())


def test_save_and_load_roundtrip_json_and_npy(tmp_path):
    plan = stratified_fraction_plan(imbalanced(), 0.05, seed=2)
    for name in ("frac.json", "frac.npy"):
        path = save_indices(tmp_path / "sub" / name, plan.indices, plan.meta())
        idx, meta = load_indices(path)
        np.testing.assert_array_equal(idx, plan.indices)
        assert meta["fraction"] == 0.05 and meta["seed"] == 2 and meta["size"] == plan.indices.size
    assert (tmp_path / "sub" / "frac.json").is_file()


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.json not found"):
        load_indices(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(DataError, match="bad.json is not a medssl index file"):
        load_indices(bad)
    bad.write_text('{"indices": [0.5, 1.5]}')
    with pytest.raises(DataError, match="1-D list of integers"):
        load_indices(bad)
    with pytest.raises(EvaluationError, match="1-D integer array"):
        save_indices(tmp_path / "x.json", np.array([0.5]))


def test_one_percent_of_real_bloodmnist_keeps_every_class():
    d = np.load(shared_file("medmnist/bloodmnist.npz"), allow_pickle=False)
    y = d["train_labels"]
    plan = stratified_fraction_plan(y, 0.01, seed=0)
    assert plan.indices.size == round(0.01 * len(y)) == 120
    counts = np.bincount(y[plan.indices, 0], minlength=8)
    assert np.all(counts >= 1)
    expected = np.bincount(y[:, 0], minlength=8) * 0.01
    assert np.all(np.abs(counts - expected) < 1)


def test_per_class_plan_takes_k_of_each_class_and_nests_across_k():
    from medssl.eval.subsets import per_class_plan

    y = imbalanced()
    five = per_class_plan(y, 5, seed=3)
    np.testing.assert_array_equal(np.bincount(y[five.indices], minlength=4), [5, 5, 5, 5])
    ten = per_class_plan(y, 10, seed=3)
    assert set(five.indices.tolist()) <= set(ten.indices.tolist())  # one seeded stream: k=5 inside k=10
    assert not np.array_equal(five.indices, per_class_plan(y, 5, seed=4).indices)
    big = per_class_plan(y, 60, seed=0)  # class 3 has 50: all of them, and a note
    assert big.taken == {"0": 60, "1": 60, "2": 60, "3": 50} and "3 (50)" in big.notes[0]


def test_per_class_plan_refuses_multilabel_and_bad_counts():
    from medssl.eval.subsets import per_class_plan

    with pytest.raises(ConfigError, match="single-label"):
        per_class_plan(np.eye(3, dtype=np.int64)[[0, 1, 2, 0]], 1)
    with pytest.raises(ConfigError, match=">= 1"):
        per_class_plan(imbalanced(), 0)
