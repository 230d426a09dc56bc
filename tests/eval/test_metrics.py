import json
import math

import numpy as np
import pytest
from medmnist.evaluator import getACC, getAUC
from sklearn import metrics as skm

from medssl.errors import ConfigError, EvaluationError
from medssl.eval.metrics import (
    accuracy,
    auc,
    auc_per_class,
    balanced_accuracy,
    bootstrap_ci,
    brier_score,
    confusion_matrix,
    evaluate_predictions,
    expected_calibration_error,
    macro_f1,
    mean_sd,
    sensitivity_specificity,
)

MEDMNIST_TASK = {"binary": "binary-class", "multiclass": "multi-class",
                 "ordinal": "ordinal-regression", "multilabel": "multi-label, binary-class"}


def random_case(task, n=300, c=5, seed=0):
    rng = np.random.default_rng(seed)
    if task == "multilabel":
        y = (rng.random((n, c)) < 0.3).astype(np.int64)
        return y, rng.random((n, c))
    c = 2 if task == "binary" else c
    y = rng.integers(0, c, (n, 1))  # MedMNIST files store labels as (N, 1)
    return y, rng.dirichlet(np.ones(c), n)


@pytest.mark.parametrize("task", ["binary", "multiclass", "ordinal", "multilabel"])
@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_accuracy_equal_medmnist_and_sklearn(task, ties):
    y, s = random_case(task, seed=int(ties))
    if ties:  # coarse scores create many ties, which the rank formula must average
        s = np.round(s, 1)
    mt = MEDMNIST_TASK[task]
    assert math.isclose(auc(y, s, task), getAUC(y, s, mt), rel_tol=0, abs_tol=1e-12)
    # multilabel: MedMNIST averages per-label accuracies, we average all entries (same value)
    assert math.isclose(accuracy(y, s, task), getACC(y, s, mt), abs_tol=1e-12)
    assert accuracy(y, s, mt) == accuracy(y, s, task)  # MedMNIST task strings are accepted
    if task == "binary":
        ref = skm.roc_auc_score(y[:, 0], s[:, 1])
    elif task == "multilabel":
        ref = skm.roc_auc_score(y, s, average="macro")
    else:
        ref = np.mean([skm.roc_auc_score(y[:, 0] == i, s[:, i]) for i in range(s.shape[1])])
        if not ties:
            assert math.isclose(ref, skm.roc_auc_score(y[:, 0], s, multi_class="ovr"), abs_tol=1e-12)
    assert math.isclose(auc(y, s, task), ref, abs_tol=1e-12)


@pytest.mark.parametrize("shape", ["n", "n1", "n2"])
def test_binary_score_layouts_agree(shape):
    y, s2 = random_case("binary", seed=3)
    s = {"n": s2[:, 1], "n1": s2[:, 1:], "n2": s2}[shape]
    assert accuracy(y, s, "binary") == getACC(y, s2, "binary-class")
    assert math.isclose(auc(y[:, 0], s, "binary"), getAUC(y, s2, "binary-class"), abs_tol=1e-12)
    assert math.isclose(brier_score(y, s, "binary"), np.mean((s2[:, 1] - y[:, 0]) ** 2))


def test_binary_accuracy_uses_strict_threshold():
    y = np.array([0, 1, 1])
    s = np.array([0.5, 0.5, 0.51])  # 0.5 is not > 0.5, so predicted negative
    assert accuracy(y, s, "binary") == pytest.approx(2 / 3)
    assert accuracy(y, s, "binary", threshold=0.4) == pytest.approx(2 / 3)
    assert accuracy(y, s, "binary", threshold=0.6) == pytest.approx(1 / 3)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_secondary_metrics_match_sklearn(task):
    y, s = random_case(task, n=400, c=4, seed=7)
    y = y[:, 0]
    pred = (s[:, 1] > 0.5).astype(int) if task == "binary" else s.argmax(1)
    c = s.shape[1]
    assert math.isclose(balanced_accuracy(y, s, task), skm.balanced_accuracy_score(y, pred))
    assert math.isclose(macro_f1(y, s, task),
                        skm.f1_score(y, pred, labels=range(c), average="macro", zero_division=0))
    np.testing.assert_array_equal(confusion_matrix(y, s, task), skm.confusion_matrix(y, pred, labels=range(c)))
    sens, spec = sensitivity_specificity(y, s, task)
    np.testing.assert_allclose(sens, skm.recall_score(y, pred, labels=range(c), average=None))
    spec_ref = [skm.recall_score(y != k, pred != k) for k in range(c)]
    np.testing.assert_allclose(spec, spec_ref)


def test_multilabel_secondary_metrics_match_sklearn():
    y, s = random_case("multilabel", n=200, c=4, seed=2)
    pred = (s > 0.5).astype(int)
    assert math.isclose(macro_f1(y, s, "multilabel"), skm.f1_score(y, pred, average="macro", zero_division=0))
    np.testing.assert_array_equal(confusion_matrix(y, s, "multilabel"), skm.multilabel_confusion_matrix(y, pred))
    ref = np.mean([skm.balanced_accuracy_score(y[:, i], pred[:, i]) for i in range(4)])
    assert math.isclose(balanced_accuracy(y, s, "multilabel"), ref)


def ece_loop(conf, correct, n_bins):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = [(c > lo or (b == 0 and c == 0)) and c <= hi for c in conf]
        if any(m):
            sel = np.array(m)
            total += sel.sum() / len(conf) * abs(correct[sel].mean() - conf[sel].mean())
    return total


def test_ece_hand_example_and_loop_reference():
    y = np.array([1, 1, 1, 0])
    s = np.full(4, 0.9)  # all in one bin: confidence 0.9, accuracy 0.75
    assert expected_calibration_error(y, s, "binary") == pytest.approx(0.15)
    yc, sc = random_case("multiclass", n=500, seed=4)
    ref = ece_loop(sc.max(1), (sc.argmax(1) == yc[:, 0]).astype(float), 10)
    assert expected_calibration_error(yc, sc, "multiclass", n_bins=10) == pytest.approx(ref, abs=1e-12)
    onehot = np.eye(5)[yc[:, 0]]
    assert expected_calibration_error(yc, onehot, "multiclass") == 0.0


def test_brier_hand_examples():
    assert brier_score([0], [[0.7, 0.2, 0.1]], "multiclass") == pytest.approx(0.14)
    assert brier_score([1, 0], [0.8, 0.4], "binary") == pytest.approx((0.04 + 0.16) / 2)
    assert brier_score([[1, 0]], [[0.9, 0.3]], "multilabel") == pytest.approx((0.01 + 0.09) / 2)


def test_missing_class_gives_null_auc_with_warning_not_a_crash():
    rng = np.random.default_rng(0)
    y = rng.choice([0, 1, 3], 120)  # class 2 absent from this split
    s = rng.dirichlet(np.ones(4), 120)
    assert math.isnan(auc(y, s, "multiclass"))
    per = auc_per_class(y, s, "multiclass")
    assert math.isnan(per[2]) and all(not math.isnan(v) for i, v in enumerate(per) if i != 2)
    res = evaluate_predictions(y, s, "multiclass", class_names=["a", "b", "c", "d"], n_boot=50)
    json.dumps(res, allow_nan=False)
    assert res["auc"] is None and res["auc_ci"] == [None, None]
    assert res["auc_per_class"]["c"] is None and res["auc_per_class"]["a"] is not None
    assert res["bootstrap"]["skipped"]["auc"] == 50
    assert any("AUC undefined" in w and "c" in w for w in res["warnings"])
    assert res["sensitivity"]["c"] is None and res["class_counts"][2] == 0
    assert res["accuracy"] == accuracy(y, s, "multiclass")


@pytest.mark.parametrize("task", ["binary", "multiclass", "ordinal", "multilabel"])
def test_evaluate_predictions_is_json_and_consistent(task):
    y, s = random_case(task, n=200, c=3, seed=5)
    res = evaluate_predictions(y, s, task, n_boot=100, seed=1)
    back = json.loads(json.dumps(res, allow_nan=False))
    assert back["accuracy"] == accuracy(y, s, task)
    assert back["auc"] == pytest.approx(auc(y, s, task))
    lo, hi = back["auc_ci"]
    assert lo <= back["auc"] <= hi
    for key in ("balanced_accuracy", "macro_f1", "ece", "brier", "sensitivity", "specificity",
                "confusion_matrix", "accuracy_ci", "bootstrap"):
        assert key in back
    assert back["warnings"] == []


def test_evaluate_predictions_on_logits_skips_ece_and_brier():
    y, s = random_case("multiclass", n=100, seed=6)
    res = evaluate_predictions(y, np.log(s), "multiclass", ci=False)
    assert res["ece"] is None and res["brier"] is None
    assert any("probabilities" in w for w in res["warnings"])
    assert res["auc"] == pytest.approx(auc(y, s, "multiclass"))  # AUC is rank-based
    with pytest.raises(EvaluationError, match="probabilities"):
        expected_calibration_error(y, np.log(s), "multiclass")


def test_bootstrap_is_seeded_and_brackets_point():
    y, s = random_case("multiclass", n=400, seed=8)
    fn = lambda a, b: accuracy(a, b, "multiclass")  # noqa: E731
    a = bootstrap_ci(fn, y, s, n_boot=300, seed=3)
    b = bootstrap_ci(fn, y, s, n_boot=300, seed=3)
    c = bootstrap_ci(fn, y, s, n_boot=300, seed=4)
    assert tuple(a) == tuple(b) and tuple(a) != tuple(c)
    point, low, high = a
    assert point == accuracy(y, s, "multiclass") and low < point < high
    p = point  # percentile CI of a binomial proportion: about +-1.96 sd
    half = 1.96 * math.sqrt(p * (1 - p) / 400)
    assert high - low == pytest.approx(2 * half, rel=0.25)
    assert a.n_used == 300 and a.n_skipped == 0


def test_bootstrap_stratified_keeps_class_counts():
    y = np.array([0] * 30 + [1] * 10)
    s = np.zeros(40)
    count1 = lambda a, b: float(np.sum(a == 1))  # noqa: E731
    assert tuple(bootstrap_ci(count1, y, s, n_boot=50, stratified=True)) == (10.0, 10.0, 10.0)
    _, low, high = bootstrap_ci(count1, y, s, n_boot=200, stratified=False)
    assert low < 10 < high


def test_bootstrap_skips_and_counts_undefined_resamples():
    y = np.array([1] + [0] * 19)  # one positive: many plain resamples miss it
    s = np.linspace(0, 1, 20)
    fn = lambda a, b: auc(a, b, "binary")  # noqa: E731
    res = bootstrap_ci(fn, y, s, n_boot=200, stratified=False)
    assert 0 < res.n_skipped < 200 and res.n_used + res.n_skipped == 200
    assert bootstrap_ci(fn, y, s, n_boot=200, stratified=True).n_skipped == 0
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_ci(fn, y, s, n_boot=0)


def test_mean_sd():
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([0.7]) == (0.7, 0.0)
    with pytest.raises(EvaluationError, match="no values"):
        mean_sd([])
    with pytest.raises(EvaluationError, match="NaN"):
        mean_sd([0.5, None])


def test_invalid_inputs_raise_our_errors():
    y, s = random_case("multiclass", n=20, c=3)
    bad = s.copy()
    bad[3, 1] = np.nan
    with pytest.raises(EvaluationError, match="NaN"):
        auc(y, bad, "multiclass")
    with pytest.raises(EvaluationError, match="label 3 out of range for 3 classes"):
        accuracy(np.full(20, 3), s, "multiclass")
    with pytest.raises(EvaluationError, match="20 labels but y_score has 19 rows"):
        accuracy(y, s[:19], "multiclass")
    with pytest.raises(EvaluationError, match="negative label"):
        accuracy(np.full(20, -1), s, "multiclass")
    with pytest.raises(EvaluationError, match="whole numbers"):
        accuracy(np.full(20, 0.5), s, "multiclass")
    with pytest.raises(EvaluationError, match=r"binary scores must have shape"):
        auc(np.zeros(20, int), s, "binary")
    with pytest.raises(EvaluationError, match="multilabel targets must be 0 or 1"):
        auc(np.full((20, 3), 2), s, "multilabel")
    with pytest.raises(EvaluationError, match=r"expected shape \(20, 3\)"):
        auc(np.zeros((20, 3)), s[:, :2], "multilabel")
    with pytest.raises(ConfigError, match="unknown task 'regression'"):
        accuracy(y, s, "regression")
    with pytest.raises(EvaluationError, match="class_names has 2 names"):
        evaluate_predictions(y, s, "multiclass", class_names=["a", "b"], ci=False)
