"""``medssl report A B`` on panels: paired differences recomputed from predictions.csv,
labels saved, pairing checks and refusing what is not a panel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medssl.errors import DataError
from medssl.eval.compare import compare_panels, labels_to_reach
from medssl.eval.config import load_transfer_config
from medssl.eval.panel import run_panel

from .transfer_helpers import export_tiny, ihc, quick_cfg


@pytest.fixture(scope="module")
def panels(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("compare")
    out = []
    for name, seed in (("A", 0), ("B", 3)):
        enc = export_tiny(root / f"enc{name}", seed=seed)
        cfg = load_transfer_config(data=quick_cfg(enc, ihc(sample_dir), root / name, protocol="knn",
                                                  label_fractions=[0.05, 0.3], labels_per_class=[2]))
        out.append(run_panel(cfg, progress=False).out_dir)
    return out


def _auc_from_csv(folder: Path, fraction: float, seeds) -> float:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    d = pd.read_csv(folder / "predictions.csv")
    d = d[(d["source"] == "encoder") & (d["label_fraction"] == fraction)]
    names = ["background", "dab_negative_tissue", "dab_positive"]
    per_seed = []
    for s in seeds:
        e = d[d["seed"] == s]
        per_seed.append(np.mean([roc_auc_score(e["true_label"] == i, e[f"score_{c}"]) for i, c in enumerate(names)]))
    return float(np.mean(per_seed))


def test_paired_difference_equals_one_recomputed_from_the_predictions(panels, tmp_path: Path) -> None:
    a, b = panels
    text, issues, result = compare_panels([a, b], figure=tmp_path / "cmp.png")
    assert issues == []
    rows = result["comparisons"][0]["rows"]
    assert [r["point"]["label"] for r in rows] == ["2 per class", "5 %", "30 %"]
    for r in rows:
        if r["point"]["kind"] != "fraction":
            continue
        want = _auc_from_csv(b, r["point"]["value"], [0, 1]) - _auc_from_csv(a, r["point"]["value"], [0, 1])
        d = r["difference"]["auc"]
        assert d["difference"] == pytest.approx(want, abs=1e-12)
        assert d["ci"][0] <= d["difference"] <= d["ci"][1] and len(d["per_seed"]) == 2
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    assert "## B − A" in text and "Labels saved" in text
    saved = result["comparisons"][0]["labels_saved"]["ihcstain"]["auc"]
    assert saved["reference"]["best"] == max(r["metrics"]["auc"]["mean"] for r in
                                             json.loads((a / "report.json").read_text())["rows"])


def test_rows_whose_subsets_differ_are_left_out_with_a_warning(panels, tmp_path: Path) -> None:
    import shutil

    a, b = panels
    c = tmp_path / "C"
    shutil.copytree(b, c)
    sub = c / "targets" / "ihcstain" / "subsets" / "fraction0.3_seed0.json"
    body = json.loads(sub.read_text())
    body["indices"] = body["indices"][1:]
    sub.write_text(json.dumps(body))
    _, issues, result = compare_panels([a, c])
    assert any("30 %: the label subsets differ" in i for i in issues)
    assert [r["point"]["label"] for r in result["comparisons"][0]["rows"]] == ["2 per class", "5 %"]


def test_labels_to_reach_interpolates_in_log_labels() -> None:
    curve = [(10, 0.70), (100, 0.80), (1000, 0.90)]
    assert labels_to_reach(curve, 0.85) == pytest.approx(10 ** 2.5)
    assert labels_to_reach(curve, 0.60) == 10  # at or below the first point: its count
    assert labels_to_reach(curve, 0.95) is None  # not reached within the panel
    assert labels_to_reach([(10, 0.7), (10, 0.9), (100, 0.9)], 0.8) == 10  # one count: the mean of its points


def test_a_single_run_report_is_refused_next_to_a_panel(panels, tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps({"format": "medssl-eval-report/1"}))
    with pytest.raises(DataError, match="not a label-efficiency panel report"):
        compare_panels([panels[0], tmp_path])


def test_other_seeds_are_not_paired_and_said_once(panels, tmp_path: Path) -> None:
    import shutil

    a, b = panels
    c = tmp_path / "C"
    shutil.copytree(b, c)
    rep = json.loads((c / "report.json").read_text())
    rep["protocol"]["seeds"] = [0, 5]
    (c / "report.json").write_text(json.dumps(rep))
    _, issues, result = compare_panels([a, c])
    assert result["comparisons"][0]["rows"] == []
    assert issues == ["C vs A: not paired, left out: seeds differ ([0, 1] vs [0, 5])"]
