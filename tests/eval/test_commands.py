"""The transfer / evaluate / embed / report commands, in-process through medssl.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medssl.cli import main

from .transfer_helpers import export_tiny, ihc

FAST = ["report.n_boot=20", "report.tsne=false", "--no-plots", "--seeds", "1"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("cmd_enc"))


def test_label_fraction_out_of_range_exits_2(encoder: Path, sample_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["transfer", "--encoder", str(encoder), "--data", str(ihc(sample_dir)), "--label-fraction", "1.5",
               "--out", str(tmp_path)])
    assert rc == 2
    assert "label_fraction must be in (0, 1], got 1.5" in capsys.readouterr().err


def test_transfer_without_encoder_or_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transfer"]) == 2
    assert "needs a YAML config or --encoder and --data" in capsys.readouterr().err


def test_yaml_form_with_overrides(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"encoder": str(encoder), "data": str(ihc(sample_dir)), "protocol": "linear"}))
    assert main(["transfer", str(cfg), "protocol=knn", "knn.k=5", f"out={tmp_path / 'o'}", *FAST]) == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["protocol"]["name"] == "knn" and rep["protocol"]["details"]["k"] == 5


def test_embed_writes_features_and_labels(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.npz"
    assert main(["embed", "--encoder", str(encoder), "--data", str(sample_dir / "pcam"), "--split", "test",
                 "--out", str(out), "--device", "cpu"]) == 0
    with np.load(out) as z:
        assert z["features"].shape[0] == 34 and z["features"].dtype == np.float32
        assert sorted(np.unique(z["labels"]).tolist()) == [0, 1] and str(z["split"]) == "test"


def _run_dir(tmp_path: Path, encoder: Path, data: dict) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for f in ("encoder.safetensors", "encoder.json"):
        (run / f).write_bytes((encoder / f).read_bytes())
    (run / "config.yaml").write_text(yaml.safe_dump({"data": data}))
    return run


def test_evaluate_uses_the_runs_own_dataset(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    run = _run_dir(tmp_path, encoder, {"name": "pcam", "root": str(sample_dir / "pcam"), "split": "train"})
    assert main(["evaluate", str(run), "--protocol", "knn", *FAST]) == 0
    rep = json.loads((run / "eval_knn" / "report.json").read_text())
    assert rep["task"] == "binary" and rep["n_test"] == 34
    assert rep["data"]["train"]["config"]["split"] == "train" and rep["data"]["test"]["config"]["split"] == "test"


def test_evaluate_refuses_unlabelled_run_data(encoder: Path, tmp_path: Path, sample_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    flat = tmp_path / "imgs"
    flat.mkdir()
    for p in sorted((sample_dir / "folder").rglob("*.png"))[:4]:
        (flat / p.name).write_bytes(p.read_bytes())
    run = _run_dir(tmp_path, encoder, {"name": "folder", "root": str(flat)})
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "has no labelled train split" in err and "medssl transfer --encoder" in err


def test_report_command_writes_the_comparison(encoder: Path, sample_dir: Path, tmp_path: Path) -> None:
    dirs = []
    for proto in ("knn", "linear"):
        d = tmp_path / proto
        assert main(["transfer", "--encoder", str(encoder), "--data", str(ihc(sample_dir)), "--protocol", proto,
                     "--out", str(d), *FAST]) == 0
        dirs.append(str(d))
    out = tmp_path / "compare.md"
    assert main(["report", *dirs, "--out", str(out)]) == 0
    text = out.read_text()
    assert "protocol differs" in text and "⚠ knn" in text and "⚠ linear" in text
