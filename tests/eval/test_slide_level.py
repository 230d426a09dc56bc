"""Slide-level pooling and metrics (medssl/eval/slide_level.py), against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.errors import EvaluationError
from medssl.eval.slide_level import markdown_lines, pool_scores, slide_level, summarise
from tests.wsi.conftest import COHORT_SLIDES, cohort, pyramid, svs_crop  # noqa: F401  (fixtures)

# 4 slides (ids 0..3) of 3, 2, 1 and 2 tiles; positive-class tile probabilities:
SLIDE = np.array([0, 0, 0, 1, 1, 2, 3, 3])
P = np.array([0.1, 0.2, 0.9, 0.3, 0.4, 0.6, 0.05, 0.15])
Y = np.array([1, 1, 1, 0, 0, 1, 0, 0])  # slides 0 and 2 positive


def test_mean_and_max_pooling_binary():
    ids, mean = pool_scores(np.stack([1 - P, P], 1), SLIDE, "mean", "binary")
    assert ids.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(mean[:, 1], [0.4, 0.35, 0.6, 0.1])
    np.testing.assert_allclose(mean.sum(1), 1)
    _, mx = pool_scores(np.stack([1 - P, P], 1), SLIDE, "max", "binary")
    np.testing.assert_allclose(mx[:, 1], [0.9, 0.4, 0.6, 0.15])
    np.testing.assert_allclose(mx[:, 0], 1 - mx[:, 1])


def test_slide_auc_differs_from_tile_auc_as_computed_by_hand():
    res = slide_level(Y, np.stack([1 - P, P], 1), SLIDE, "binary", slide_names=["a", "b", "c", "d"])
    # mean: positives 0.4, 0.6 vs negatives 0.35, 0.1 -> every pair ranked right
    assert res["mean"]["auc"] == 1.0 and res["max"]["auc"] == 1.0
    # accuracy at 0.5: mean pooling calls slide a (0.4) negative; max pooling gets all four
    assert res["mean"]["accuracy"] == 0.75 and res["max"]["accuracy"] == 1.0
    assert res["n_slides"] == 4 and res["class_counts"] == [2, 2]
    assert res["scores"]["a"] == {"label": 1, "mean": pytest.approx(0.4), "max": pytest.approx(0.9)}


def test_multiclass_max_is_renormalised():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
    _, mx = pool_scores(scores, np.array([0, 0, 1]), "max", "multiclass")
    np.testing.assert_allclose(mx[0], np.array([0.7, 0.2, 0.8]) / 1.7)
    res = slide_level([2, 2, 0], scores, [0, 0, 1], "multiclass")
    assert res["max"]["accuracy"] == 1.0 and res["scores"]["0"]["max"] == 2


def test_undefined_auc_is_none_and_mixed_labels_are_refused():
    one_class = slide_level([1, 1, 1], [0.2, 0.3, 0.9], [0, 0, 1], "binary")
    assert one_class["mean"]["auc"] is None and one_class["max"]["accuracy"] == 0.5
    with pytest.raises(EvaluationError, match="slide 0 has tiles with different labels"):
        slide_level([0, 1], [0.1, 0.2], [0, 0], "binary")
    with pytest.raises(EvaluationError, match="pooling must be one of mean, max"):
        pool_scores(np.zeros((2, 2)), np.zeros(2), "median", "binary")
    with pytest.raises(EvaluationError, match="not 'multilabel'"):
        slide_level([0], [0.1], [0], "multilabel")


def test_summary_across_seeds_and_markdown():
    a = slide_level(Y, P, SLIDE, "binary")
    b = slide_level(Y, np.where(SLIDE == 1, 0.95, P), SLIDE, "binary")  # slide b now scores highest
    s = summarise([{"metrics": {"slide_level": a}}, {"metrics": {"slide_level": b}}, {"metrics": {}}])
    assert s["mean"]["auc"]["n"] == 2 and s["mean"]["auc"]["mean"] == pytest.approx((1.0 + 0.5) / 2)
    md = "\n".join(markdown_lines(s))
    assert "## Slide level" in md and "| max |" in md and "4 test slides" in md
    assert summarise([{"metrics": {}}]) is None and markdown_lines(None) == []


@pytest.mark.shared_data
def test_transfer_on_slide_tiles_reports_slide_level_auc(cohort, tmp_path):
    """``medssl transfer`` on a labelled tiling: the report gains a slide-level section."""
    import json
    import shutil

    from medssl.eval.config import load_transfer_config
    from medssl.eval.transfer import run_transfer
    from medssl.wsi.splits import write_splits
    from tests.eval.transfer_helpers import export_tiny, quick_cfg

    tiles = tmp_path / "tiles"
    shutil.copytree(cohort, tiles)
    splits = write_splits(tiles, val=0.0, test=0.4, seed=0)["splits"]
    test_slides, train_slides = splits["test"], splits["train"]
    label = {test_slides[0]: "tumor", test_slides[1]: "normal", train_slides[0]: "tumor"}
    csv = tmp_path / "slides.csv"
    csv.write_text("slide,label\n" + "".join(f"{s},{label.get(s, 'normal')}\n" for s in COHORT_SLIDES))
    enc = export_tiny(tmp_path / "enc", image_size=32)
    cfg = load_transfer_config(data=quick_cfg(enc, {"name": "wsi_tiles", "root": str(tiles), "labels": str(csv)},
                                              tmp_path / "out", label_fraction=1.0))
    report = run_transfer(cfg).report
    sl = report["slide_level"]
    assert sl["n_slides"] == 2 and sl["class_counts"] == [1, 1]
    for how in ("mean", "max"):
        assert sl[how]["auc"]["n"] == 2 and 0.0 <= sl[how]["auc"]["mean"] <= 1.0
    seed0 = report["per_seed"][0]["metrics"]["slide_level"]
    assert set(seed0["scores"]) == set(test_slides) and seed0["scores"][test_slides[0]]["label"] == 1
    assert "## Slide level" in (tmp_path / "out" / "report.md").read_text()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["slide_level"]["n_slides"] == 2


class _Patients:
    """A test set that knows its images' patients (as the dicom / nifti data sets do)."""

    def __init__(self, index: np.ndarray) -> None:
        self._index = index
        self.patient_names = [f"p-{i:016x}" for i in range(int(index.max()) + 1)]

    def patient_index(self) -> np.ndarray:
        return self._index


def test_radiology_test_sets_pool_per_patient():
    from medssl.eval.slide_level import for_dataset

    res = for_dataset(_Patients(SLIDE), Y, np.stack([1 - P, P], 1), "binary")
    assert res["unit"] == "patient" and res["n_slides"] == 4
    assert res["mean"]["auc"] == 1.0 and set(res["scores"]) == {f"p-{i:016x}" for i in range(4)}
    md = "\n".join(markdown_lines(summarise([{"metrics": {"slide_level": res}}])))
    assert "## Patient level" in md and "4 test patients" in md and "| Patient AUC |" in md
    mixed = Y.copy()
    mixed[0] = 0  # patient 0 now has images of two labels: no patient-level truth, no section
    assert for_dataset(_Patients(SLIDE), mixed, np.stack([1 - P, P], 1), "binary") is None
