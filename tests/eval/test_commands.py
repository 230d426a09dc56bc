"""The transfer / evaluate / embed / report commands, in-process through medssl.cli.main."""

from __future__ import annotations

import json
import re
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
    # a whole config, as `medssl pretrain` writes it (a run's config.yaml missing keys is refused)
    from medssl.config import to_dict
    from medssl.train.config import load_pretrain_config

    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(load_pretrain_config(data={"data": data}))))
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
    assert "predictions.csv" in text and "scikit-learn" in text  # where to audit and recompute


def _transfer(encoder: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["transfer", "--encoder", str(encoder), "--data", str(data), "--out", str(out), *FAST, *extra])


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("medssl: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_transfer_without_data_names_the_flag_and_the_yaml_key(encoder: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transfer", "--encoder", str(encoder), "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--data PATH" in line and "`data:`" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("broken", ["encoder", "data"])
def test_failed_transfer_leaves_no_output_directory(encoder: Path, sample_dir: Path, tmp_path: Path, broken: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    enc = tmp_path / "no_such_run" if broken == "encoder" else encoder
    data = tmp_path / "no_such.npz" if broken == "data" else ihc(sample_dir)
    out = tmp_path / "deep" / "out"
    assert _transfer(enc, data, out) == 2
    _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "deep").exists()


def test_transfer_out_that_is_a_file_is_refused(encoder: Path, sample_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.txt"
    out.write_text("keep me")
    assert _transfer(encoder, ihc(sample_dir), out) == 2
    assert "is an existing file, not a directory" in _one_error_line(capsys.readouterr().err)
    assert out.read_text() == "keep me"


def test_transfer_out_in_an_unwritable_directory_is_refused(encoder: Path, sample_dir: Path, unwritable_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _transfer(encoder, ihc(sample_dir), unwritable_dir / "out") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(unwritable_dir / "out") in line and ("permission" in line.lower() or "not permitted" in line)


@pytest.mark.parametrize("where", ["under_a_file", "a_directory", "unwritable"])
def test_embed_out_that_cannot_be_written_is_refused(encoder: Path, sample_dir: Path, tmp_path: Path, where: str,
                                                     request: pytest.FixtureRequest,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    if where == "under_a_file":
        (tmp_path / "f.txt").write_text("x")
        out, expect = tmp_path / "f.txt" / "e.npz", "is a file, not a directory"
    elif where == "a_directory":
        out, expect = tmp_path / "e.npz", "is an existing directory"
        out.mkdir()
    else:
        out, expect = request.getfixturevalue("unwritable_dir") / "e.npz", "unwritable"
    rc = main(["embed", "--encoder", str(encoder), "--data", str(sample_dir / "pcam"), "--out", str(out),
               "--device", "cpu"])
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err)
    if expect == "unwritable":
        assert "permission" in line.lower() or "not permitted" in line
    else:
        assert expect in line


def test_transfer_progress_names_each_stage_and_no_progress_silences_it(
        encoder: Path, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _transfer(encoder, ihc(sample_dir), tmp_path / "a") == 0
    err = capsys.readouterr().err
    for stage in ("medssl: embed train (train): 540/540 img", "medssl: embed test (test): 195/195 img",
                  "medssl: linear probe, 1 seed(s): 1/1 seed"):
        assert stage in err, err
    assert _transfer(encoder, ihc(sample_dir), tmp_path / "b", "--no-progress") == 0
    assert "medssl: embed" not in capsys.readouterr().err
    assert main(["embed", "--encoder", str(encoder), "--data", str(sample_dir / "pcam"), "--split", "test",
                 "--out", str(tmp_path / "f.npz"), "--device", "cpu"]) == 0
    assert "medssl: embed test: 34/34 img (100 %), done in" in capsys.readouterr().err


def test_embed_uses_the_thread_budget_reports_it_and_restores_torch(encoder: Path, sample_dir: Path,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    before = torch.get_num_threads()
    out = tmp_path / "f.npz"
    assert main(["embed", "--encoder", str(encoder), "--data", str(sample_dir / "pcam"), "--split", "test",
                 "--out", str(out), "--device", "cpu", "--threads", "3"]) == 0
    captured = capsys.readouterr()
    assert "3 torch threads (--threads=3)" in captured.err
    assert re.search(r"embed test: 34/34 img \(100 %\), done in \d+ s, [\d,.]+ img/s", captured.err)
    assert torch.get_num_threads() == before


def test_embed_rejects_a_bad_thread_count(encoder: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--encoder", str(encoder), "--data", "x", "--out", str(tmp_path / "f.npz"),
              "--threads", "0"])
    assert exc.value.code == 2
    assert "--threads: must be a positive integer or 'auto', got '0'" in capsys.readouterr().err


def test_transfer_threads_flag_is_applied_and_auto_never_exceeds_the_cores(
        encoder: Path, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from medssl.threads import available_cores

    assert main(["transfer", "--encoder", str(encoder), "--data", str(ihc(sample_dir)), "--protocol", "knn",
                 "--threads", "1", "--out", str(tmp_path / "a"), "--device", "cpu", *FAST]) == 0
    assert "1 torch thread (threads=1)" in capsys.readouterr().err
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert main(["transfer", "--encoder", str(encoder), "--data", str(ihc(sample_dir)), "--protocol", "knn",
                 "--out", str(tmp_path / "b"), "--device", "cpu", *FAST]) == 0
    err = capsys.readouterr().err
    assert f"{available_cores()} torch thread" in err and "auto:" in err


def test_several_values_become_panel_keys_and_one_value_keeps_the_old_ones(capsys: pytest.CaptureFixture[str],
                                                                          tmp_path: Path) -> None:
    assert main(["transfer", "--encoder", "e", "--data", "a.npz", "b/", "--label-fraction", "0.1", "0.2",
                 "--labels-per-class", "5", "--baseline", "random", "pixels", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["targets"] == ["a.npz", "b/"] and cfg["data"] == "a.npz"
    assert cfg["label_fractions"] == [0.1, 0.2] and cfg["labels_per_class"] == [5]
    assert cfg["baselines"] == ["random", "pixels"]
    assert main(["transfer", "--encoder", "e", "--data", "a.npz", "--label-fraction", "0.1", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"] == "a.npz" and cfg["label_fraction"] == 0.1
    assert cfg["targets"] == [] and cfg["label_fractions"] == []
    # overrides after a several-valued flag are still overrides
    assert main(["transfer", "--encoder", "e", "--data", "a.npz", "b.npz", "seeds=5", "--label-fraction", "0.1",
                 "0.2", "protocol=knn", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["targets"] == ["a.npz", "b.npz"] and cfg["seeds"] == 5 and cfg["protocol"] == "knn"
    assert main(["transfer", "--encoder", "e", "--data", "a.npz", "--label-fraction", "0.1", "half"]) == 2
    assert "--label-fraction: 'half' is not a number" in capsys.readouterr().err
    assert main(["transfer", "--encoder", "e", "--data", "a.npz", "--baseline", "noise", "--print-config"]) == 2
    assert "noise" in capsys.readouterr().err
    y = tmp_path / "panel.yaml"  # a YAML panel may list its targets without `data:`
    y.write_text(yaml.safe_dump({"encoder": "e", "targets": ["x.npz", "y.npz"], "label_fractions": [0.5]}))
    assert main(["transfer", str(y), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"] == "x.npz"


def test_panel_transfer_and_report_on_panels(sample_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    dirs = []
    for seed in (0, 1):
        enc = export_tiny(tmp_path / f"enc{seed}", seed=seed)
        out = tmp_path / f"panel{seed}"
        assert main(["transfer", "--encoder", str(enc), "--data", str(ihc(sample_dir)), "--protocol", "knn",
                     "--label-fraction", "0.1", "0.4", "--device", "cpu", "--out", str(out), "--no-progress",
                     *FAST]) == 0
        assert "(AUC, mean over seeds and 95 % CI)" in capsys.readouterr().out
        dirs.append(str(out))
    md = tmp_path / "cmp.md"
    assert main(["report", *dirs, "--out", str(md)]) == 0
    assert "## panel1 − panel0" in md.read_text() and md.with_suffix(".png").is_file()
    assert len(json.loads(md.with_suffix(".json").read_text())["comparisons"][0]["rows"]) == 2
