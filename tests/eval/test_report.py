"""report.md rendering and the side-by-side comparison of evaluation directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medssl.errors import DataError
from medssl.eval.config import load_transfer_config
from medssl.eval.report import compare_reports, load_report, render_markdown
from medssl.eval.transfer import run_transfer

from .transfer_helpers import export_tiny, ihc, quick_cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path):
    root = tmp_path_factory.mktemp("reports")
    enc = export_tiny(root / "enc")
    out = {}
    for name, extra in {"knn20": {"protocol": "knn"}, "knn50": {"protocol": "knn", "label_fraction": 0.5},
                        "knn20b": {"protocol": "knn", "seed": 5}}.items():
        out[name] = run_transfer(load_transfer_config(data=quick_cfg(enc, ihc(sample_dir), root / name, **extra))).out_dir
    return out


def test_markdown_has_the_clinical_table(runs) -> None:
    rep = load_report(runs["knn20"])
    md = render_markdown(rep)
    assert "| Metric | Mean ± SD across seeds | 95 % CI of the mean (test-set bootstrap pooled over the 2 seeds) |" in md
    auc = rep["aggregate"]["auc"]
    assert f"| AUC (ROC) | {auc['mean']:.3f} ± {auc['sd']:.3f} (n=2) |" in md
    for name in rep["class_names"]:
        assert f"| {name} | " in md
    assert "Weighted kNN" in md and "k = 20" in md and "20 % of the labelled 'train' split" in md
    assert md == (runs["knn20"] / "report.md").read_text()


def test_compare_flags_different_label_fractions(runs) -> None:
    text, issues = compare_reports([runs["knn20"], runs["knn50"]])
    assert len(issues) == 1 and "label fraction differs" in issues[0]
    assert "⚠ 20 %" in text and "⚠ 50 %" in text and text.startswith("**Warning")


def test_compare_same_setup_has_no_warning(runs) -> None:
    text, issues = compare_reports([runs["knn20"], runs["knn20b"]])
    assert issues == [] and "⚠" not in text
    rows = [l for l in text.splitlines() if l.startswith("| knn20")]
    assert len(rows) == 2 and all("| knn |" in r for r in rows)


def test_load_report_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no report.json"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="not a medssl evaluation report"):
        load_report(tmp_path)
