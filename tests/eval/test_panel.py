"""Label-efficiency panels (run_panel) on the embedded sample: equality with single runs,
shared subsets, baselines, outputs, progress and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medssl.errors import ConfigError, DataError
from medssl.eval.config import load_transfer_config
from medssl.eval.panel import run_panel
from medssl.eval.subsets import load_indices
from medssl.eval.transfer import run_transfer

from .transfer_helpers import export_tiny, ihc, quick_cfg


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("enc_panel"))  # random weights, torch seed 0


def binary_npz(sample_dir: Path, out: Path) -> Path:
    """The first 200 / 80 of the sample's IHC tiles relabelled DAB-positive or not: another
    class set (2 classes)."""
    from medssl.data.medmnist.writer import write_medmnist_npz

    with np.load(ihc(sample_dir)) as z:
        splits = {s: (z[f"{s}_images"][:n], (z[f"{s}_labels"].reshape(-1)[:n] == 2).astype(np.int64))
                  for s, n in (("train", 200), ("test", 80))}
    return write_medmnist_npz(out, splits, info={"task": "binary", "class_names": ["other", "dab_positive"]})


@pytest.fixture(scope="module")
def panel(encoder: Path, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("panel")
    two = binary_npz(sample_dir, out.parent / "binary.npz")
    cfg = load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), out / "run",
                                              targets=[str(ihc(sample_dir)), str(two)], protocol="knn",
                                              label_fractions=[0.1, 0.2], labels_per_class=[3],
                                              baselines=["random", "pixels"],
                                              report={"n_boot": 50, "tsne": False, "plots": True}))
    return run_panel(cfg, progress=False)


def _same_as_single(panel_dir: Path, row: dict, single) -> None:
    assert row["metrics"]["auc"]["values"] == [s["metrics"]["auc"] for s in single.report["per_seed"]]
    assert row["metrics"]["accuracy"]["mean"] == single.report["aggregate"]["accuracy"]["mean"]
    for rel, seed_rec in zip(row["subset_files"], single.report["per_seed"]):
        np.testing.assert_array_equal(load_indices(panel_dir / rel)[0],
                                      load_indices(single.out_dir / seed_rec["subset"]["file"])[0])


def test_a_panel_point_equals_a_single_fraction_run(encoder: Path, sample_dir: Path, panel, tmp_path: Path) -> None:
    single = run_transfer(load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path, protocol="knn")))
    row = next(r for r in panel.report["rows"] if r["target"] == "ihcstain" and r["source"] == "encoder"
               and r["point"] == {"kind": "fraction", "value": 0.2, "label": "20 %"})  # quick_cfg: 0.2, 2 seeds
    _same_as_single(panel.out_dir, row, single)


def test_a_linear_panel_point_equals_a_single_fraction_run(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    one = dict(seeds=1, label_fraction=0.5)
    single = run_transfer(load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path / "single", **one)))
    cfg = load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path / "panel", label_fractions=[0.1, 0.5],
                                              **one))
    row = [r for r in run_panel(cfg, progress=False).report["rows"] if r["point"]["value"] == 0.5]
    _same_as_single(tmp_path / "panel", row[0], single)


def test_rows_cis_baselines_and_pairing(panel) -> None:
    rep = panel.report
    assert [t["name"] for t in rep["targets"]] == ["ihcstain", "binary"] and not panel.failed
    assert {t["num_classes"] for t in rep["targets"]} == {2, 3}  # class sets differ: each scored on its own
    assert len(rep["rows"]) == 2 * 3 * 3  # targets x points x sources
    for r in rep["rows"]:
        auc = r["metrics"]["auc"]
        assert auc["ci"][0] <= auc["mean"] <= auc["ci"][1] and auc["n"] == 2
    per_class = [r for r in rep["rows"] if r["point"]["kind"] == "per_class" and r["target"] == "binary"]
    assert {r["n_labels"] for r in per_class} == {6.0}  # 3 per class, 2 classes
    # the test encoder *is* a random init with torch seed 0, as the random baseline: equal rows, zero difference
    enc, rnd = ([r for r in rep["rows"] if r["source"] == s and r["target"] == "ihcstain"]
                for s in ("encoder", "random"))
    assert [r["metrics"]["auc"]["values"] for r in enc] == [r["metrics"]["auc"]["values"] for r in rnd]
    assert all(r["vs"]["random"]["auc"]["difference"] == 0.0 for r in enc)
    assert any(r["vs"]["pixels"]["auc"]["difference"] != 0.0 for r in enc)
    assert set(panel.cache_hits.values()) == {"computed"} and len(panel.cache_hits) == 2 * 3 * 2


def test_outputs_predictions_figure_markdown(panel) -> None:
    out = panel.out_dir
    assert (out / "label_efficiency.png").stat().st_size > 10_000
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 2 * 3 * (195 + 80)  # sources x seeds x points x test images of both targets
    assert {r["target"] for r in rows} == {"ihcstain", "binary"}
    assert {r["label_fraction"] for r in rows} == {"0.1", "0.2", ""}
    assert {r["labels_per_class"] for r in rows} == {"", "3"}
    binary = next(r for r in rows if r["target"] == "binary")
    assert binary["score_dab_positive"] and binary["score_background"] == ""  # the other target's column
    md = (out / "report.md").read_text()
    assert "## ihcstain" in md and "## binary" in md and "What the encoder adds" in md
    assert json.loads((out / "report.json").read_text())["format"] == "medssl-panel-report/1"


def test_progress_covers_the_whole_panel(encoder: Path, sample_dir: Path, tmp_path: Path, capsys) -> None:
    cfg = load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path, protocol="knn",
                                              label_fractions=[0.1, 0.5]))
    run_panel(cfg, progress=True)
    err = capsys.readouterr().err
    assert "panel: 1 target(s) x 2 point(s) x 2 seed(s) x 1 feature source(s): 4/4 probe (100 %), done" in err
    # a second call reuses the disk cache
    assert set(run_panel(cfg, progress=False).cache_hits.values()) == {"disk"}


def test_a_fraction_leaving_a_class_empty_is_raised_with_a_warning(encoder: Path, sample_dir: Path,
                                                                   tmp_path: Path) -> None:
    cfg = load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path, protocol="knn", seeds=1,
                                              label_fractions=[0.001, 0.002]))
    rep = run_panel(cfg, progress=False).report
    assert [r["n_labels"] for r in rep["rows"]] == [3.0, 3.0]
    assert any("0.1 %: 1 labelled image(s) would leave a class without one; raised to at least 1 per class "
               "(3 images)" in w for w in rep["warnings"])
    assert any("0.1 % and 0.2 % give the same number of labelled images (3)" in w for w in rep["warnings"])


@pytest.mark.parametrize("extra, match", [
    ({"label_fractions": [0.1, 0.1]}, "given twice"),
    ({"label_fractions": [0.1, 1.5]}, r"label_fractions\[1\] = 1.5 must be in \(0, 1\]"),
    ({"label_fractions": [0.0]}, r"must be in \(0, 1\]"),
    ({"labels_per_class": [0]}, ">= 1"),
    ({"labels_per_class": [5, 5]}, "given twice"),
    ({"baselines": ["pixels"], "protocol": "finetune"}, "finetune is not run as a panel"),
])
def test_bad_panel_settings_are_refused(extra, match) -> None:
    with pytest.raises(ConfigError, match=match):
        load_transfer_config(data={"encoder": "e", "data": "d", **extra})


def test_a_missing_target_stops_before_any_work(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path / "out",
                                              targets=[str(ihc(sample_dir)), str(tmp_path / "nope.npz")]))
    with pytest.raises(DataError, match=r"target 'nope' .*nope.npz.* cannot be read"):
        run_panel(cfg, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_target_that_fails_while_read_is_named_and_the_others_are_kept(encoder: Path, sample_dir: Path,
                                                                          tmp_path: Path, capsys) -> None:
    from medssl.cli import main

    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip file at all")
    out = tmp_path / "out"
    code = main(["transfer", "--encoder", str(encoder), "--data", str(ihc(sample_dir)), str(bad), "--protocol", "knn",
                 "--seeds", "1", "--label-fraction", "0.1", "0.3", "--device", "cpu", "--out", str(out),
                 "--no-progress", "--no-plots", "report.n_boot=20"])
    err = capsys.readouterr().err
    assert code == 2 and "target 'broken'" in err and "The other targets were scored" in err
    rep = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in rep["targets"]] == ["ihcstain"] and rep["failed_targets"][0]["target"] == "broken"
    assert "## Failed targets" in (out / "report.md").read_text()
