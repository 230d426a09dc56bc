"""run_transfer on the embedded sample: reports, subsets, feature cache, edge cases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from medssl.errors import ConfigError, DataError
from medssl.eval.config import load_transfer_config
from medssl.eval.subsets import load_indices
from medssl.eval.transfer import aggregate, run_transfer

from .transfer_helpers import export_tiny, gray_npz, ihc, quick_cfg


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("enc28"))


def test_linear_report_subsets_and_cache_reuse(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path))
    first = run_transfer(cfg)
    assert first.cache_hits == {"train:train": False, "test:test": False}
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["protocol"]["name"] == "linear" and rep["protocol"]["seeds"] == [0, 1]
    assert rep["protocol"]["details"]["method"].startswith("linear probe")
    assert rep["task"] == "multiclass" and rep["n_test"] == 195
    assert 0.0 <= rep["aggregate"]["auc"]["mean"] <= 1.0 and rep["aggregate"]["auc"]["n"] == 2
    assert rep["per_seed"][0]["metrics"]["auc_ci"][0] <= rep["per_seed"][0]["metrics"]["auc"]
    assert len(rep["encoder"]["sha256"]) == 64 and rep["encoder"]["encoder_json"]["backbone"] == "test_resnet"
    assert rep["data"]["train"]["files"][0]["size"] == ihc(sample_dir).stat().st_size
    assert {"medssl", "torch"} <= set(rep["versions"])
    for seed, rel in zip((0, 1), rep["subset_files"]):
        idx, meta = load_indices(tmp_path / rel)
        assert meta["seed"] == seed and idx.size == meta["size"] == 108  # 20 % of 540
    cache = tmp_path / "features_train_train.npz"
    stamp = cache.stat().st_mtime_ns
    second = run_transfer(cfg)
    assert second.cache_hits == {"train:train": True, "test:test": True}
    assert cache.stat().st_mtime_ns == stamp
    assert second.report["aggregate"]["auc"] == first.report["aggregate"]["auc"]


def test_cache_is_recomputed_for_another_encoder(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    run_transfer(load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path, protocol="knn", seeds=1)))
    other = export_tiny(tmp_path / "other", seed=1)
    res = run_transfer(load_transfer_config(data=quick_cfg(other, ihc(sample_dir), tmp_path, protocol="knn", seeds=1)))
    assert res.cache_hits == {"train:train": False, "test:test": False}
    assert res.report["protocol"]["details"]["k"] == 20


def test_tiny_fraction_notes_that_min_per_class_dominates(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    res = run_transfer(load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path, protocol="knn",
                                                           label_fraction=0.001, seeds=1)))
    assert res.report["per_seed"][0]["subset"]["size"] == 3  # target 1, one per class
    assert any("min_per_class=1 dominates" in n for n in res.report["notes"])
    assert "dominates" in (tmp_path / "report.md").read_text()


def test_test_split_missing_a_class_gives_null_auc_and_warning(encoder: Path, sample_dir: Path,
                                                               tmp_path: Path) -> None:
    data = gray_npz(sample_dir, tmp_path / "nobg.npz", drop_test_class=0)
    res = run_transfer(load_transfer_config(data=quick_cfg(encoder, data, tmp_path / "out", protocol="knn")))
    assert res.report["aggregate"]["auc"]["mean"] is None
    assert res.report["per_seed"][0]["metrics"]["auc_per_class"]["background"] is None
    assert any("test split has no example of class(es) background" in w for w in res.report["warnings"])
    assert res.report["aggregate"]["accuracy"]["mean"] is not None
    assert "n/a (undefined)" in (tmp_path / "out" / "report.md").read_text()


def test_rgb_encoder_on_grayscale_data(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    data = gray_npz(sample_dir, tmp_path / "gray.npz")
    res = run_transfer(load_transfer_config(data=quick_cfg(encoder, data, tmp_path / "out", protocol="knn")))
    assert res.report["data"]["train"]["describe"]["in_channels"] == 1
    assert res.report["encoder"]["encoder_json"]["in_chans"] == 3
    assert res.report["aggregate"]["auc"]["mean"] > 0.5  # real signal survives gray -> 3 channels


def test_stl10_sized_encoder_on_28px_medical_data(sample_dir: Path, tmp_path: Path) -> None:
    enc96 = export_tiny(tmp_path / "stl", image_size=96)
    res = run_transfer(load_transfer_config(data=quick_cfg(enc96, ihc(sample_dir), tmp_path / "out", seeds=1)))
    with np.load(tmp_path / "out" / "features_train_train.npz") as z:
        assert z["features"].shape == (540, res.report["encoder"]["encoder_json"]["num_features"])
    assert res.report["encoder"]["encoder_json"]["image_size"] == 96
    assert "96 px input" in res.report["protocol"]["text"]


def test_unlabelled_split_is_refused(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_transfer_config(data=quick_cfg(encoder, sample_dir / "stl10", tmp_path, split_train="unlabeled"))
    with pytest.raises(DataError, match="unlabelled"):
        run_transfer(cfg)


def test_label_fraction_outside_unit_interval_is_a_config_error(encoder: Path, sample_dir: Path,
                                                                tmp_path: Path) -> None:
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"label_fraction must be in \(0, 1\]"):
            load_transfer_config(data=quick_cfg(encoder, ihc(sample_dir), tmp_path, label_fraction=bad))


def test_aggregate_leaves_out_undefined_seeds() -> None:
    def seed(auc):
        m = {k: 0.5 for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "brier")}
        return {"metrics": {**m, "auc": auc, "sensitivity": {"a": 1.0}, "specificity": {"a": None}}}

    agg, notes = aggregate([seed(0.8), seed(None), seed(0.6)])
    assert agg["auc"]["mean"] == pytest.approx(0.7) and agg["auc"]["n"] == 2
    assert agg["specificity"]["a"]["mean"] is None
    assert any(n.startswith("auc: null on 1 of 3") for n in notes)


def test_check_label_spaces_compares_names_index_by_index() -> None:
    from types import SimpleNamespace

    from medssl.eval.transfer import check_label_spaces

    def ds(*names: str, task: str = "binary") -> SimpleNamespace:
        return SimpleNamespace(task=task, num_classes=len(names), class_names=list(names),
                               describe=lambda: {"dataset": "X", "split": "test"}, source_files=lambda: [])

    names, source, warnings = check_label_spaces(ds("normal", "tumor"), ds("Normal", " tumor "))
    assert names == ["normal", "tumor"] and source["agree"] and not warnings
    with pytest.raises(DataError, match=r"1: 'tumor' vs 'benign'.*--allow-class-name-mismatch"):
        check_label_spaces(ds("normal", "tumor"), ds("normal", "benign"))
    names, source, warnings = check_label_spaces(ds("normal", "tumor"), ds("normal", "benign"), True)
    assert names == ["normal", "tumor"] and source["test"] == ["normal", "benign"] and not source["agree"]
    assert "report uses the train names" in warnings[0]
    with pytest.raises(DataError, match=r"binary with 2 classes, test is multiclass with 3"):
        check_label_spaces(ds("a", "b"), ds("a", "b", "c", task="multiclass"), True)
