"""Evaluation on embeddings: metrics (MedMNIST AUC / accuracy semantics), weighted kNN,
linear probe and stratified label fractions. Protocols: docs/evaluation.md."""

from medssl.eval.knn import knn_evaluate, knn_predict
from medssl.eval.linear import LinearModel, LinearProbeResult, fit_linear, linear_probe
from medssl.eval.metrics import (
    BootstrapCI,
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
from medssl.eval.subsets import (
    FractionPlan,
    load_indices,
    save_indices,
    stratified_fraction,
    stratified_fraction_plan,
)

__all__ = [
    "BootstrapCI", "FractionPlan", "LinearModel", "LinearProbeResult",
    "accuracy", "auc", "auc_per_class", "balanced_accuracy", "bootstrap_ci", "brier_score",
    "confusion_matrix", "evaluate_predictions", "expected_calibration_error", "fit_linear",
    "knn_evaluate", "knn_predict", "linear_probe", "load_indices", "macro_f1", "mean_sd",
    "save_indices", "sensitivity_specificity", "stratified_fraction", "stratified_fraction_plan",
]
