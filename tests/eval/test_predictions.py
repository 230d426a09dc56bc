"""predictions.csv: one row per seed and test image, enough to recompute the report's
metrics with scikit-learn alone (and the recipe report.md prints does exactly that)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from medssl.data.open import open_dataset
from medssl.eval.config import load_transfer_config
from medssl.eval.predictions import auc_recipe, prediction_rows
from medssl.eval.transfer import run_transfer

from .transfer_helpers import export_tiny, ihc, quick_cfg


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("pred_enc"))


def _read(path: Path) -> List[Dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_multiclass_auc_recomputed_with_sklearn_matches_the_report(encoder: Path, sample_dir: Path,
                                                                   tmp_path: Path) -> None:
    run_transfer(load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path)), progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    rows = _read(tmp_path / report["predictions"])
    names = report["class_names"]
    test = open_dataset(ihc(sample_dir), split="test")
    truth = np.asarray(test.labels()).reshape(-1)
    per_seed_auc = []
    for entry in report["per_seed"]:
        seed_rows = [r for r in rows if int(r["seed"]) == entry["seed"]]
        assert [int(r["index"]) for r in seed_rows] == list(range(len(test)))
        assert {r["split"] for r in seed_rows} == {"test"}
        y = np.array([int(r["true_label"]) for r in seed_rows])
        assert (y == truth).all() and [r["true_class"] for r in seed_rows] == [names[i] for i in y]
        scores = np.array([[float(r[f"score_{n}"]) for n in names] for r in seed_rows])
        pred = np.array([int(r["predicted_label"]) for r in seed_rows])
        assert (pred == scores.argmax(1)).all() and [r["predicted_class"] for r in seed_rows] == [names[i] for i in pred]
        auc = np.mean([roc_auc_score(y == i, scores[:, i]) for i in range(len(names))])
        assert auc == pytest.approx(entry["metrics"]["auc"], abs=1e-12)
        assert accuracy_score(y, pred) == pytest.approx(entry["metrics"]["accuracy"], abs=1e-12)
        per_seed_auc.append(auc)
    assert np.mean(per_seed_auc) == pytest.approx(report["aggregate"]["auc"]["mean"], abs=1e-12)
    md = (tmp_path / "report.md").read_text()
    assert "## Per-image predictions" in md and "roc_auc_score" in md


def test_binary_knn_predictions_and_the_printed_recipe(encoder: Path, sample_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = str(sample_dir / "pcam")
    run_transfer(load_transfer_config(data=quick_cfg(encoder, data, tmp_path, protocol="knn", seeds=1)),
                 progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    rows = _read(tmp_path / "predictions.csv")
    names = report["class_names"]
    y = np.array([int(r["true_label"]) for r in rows])
    pos = np.array([float(r[f"score_{names[1]}"]) for r in rows])
    assert roc_auc_score(y, pos) == pytest.approx(report["per_seed"][0]["metrics"]["auc"], abs=1e-12)
    assert [int(r["predicted_label"]) for r in rows] == (pos > 0.5).astype(int).tolist()

    pytest.importorskip("pandas")  # the recipe a user copies from report.md uses pandas
    recipe = auc_recipe(report["task"], names, report["per_seed"][0]["seed"])
    assert recipe in (tmp_path / "report.md").read_text()
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(recipe, {})
    assert float(printed.getvalue()) == pytest.approx(report["aggregate"]["auc"]["mean"], abs=1e-12)


def test_multilabel_rows_have_columns_per_label() -> None:
    y = np.array([[1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.51]])
    header, rows = prediction_rows(2, "test", y, s, "multilabel", ["edema", "mass", "nodule"])
    assert header == ["seed", "index", "split", "true_edema", "predicted_edema", "score_edema", "true_mass",
                      "predicted_mass", "score_mass", "true_nodule", "predicted_nodule", "score_nodule"]
    assert rows[1] == [2, 1, "test", 0, 0, "0.4", 0, 1, "0.7", 1, 1, "0.51"]


def test_repeated_class_names_stay_distinct_columns() -> None:
    header, rows = prediction_rows(0, "val", [0, 2], np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]), "multiclass",
                                   ["a", "b", "a"])
    assert header[-3:] == ["score_a_0", "score_b", "score_a_2"]
    assert rows[1][3:7] == [2, "a", 2, "a"]
