"""``medssl data sample|info|stats`` (medssl/data/commands.py), in-process plus one subprocess check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from medssl.cli import main
from medssl.data.info import channel_stats
from medssl.data.open import open_dataset


def test_sample_command(tmp_path, capsys):
    assert main(["data", "sample", str(tmp_path / "s"), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed 3" in out and "pcam: train" in out
    assert (tmp_path / "s" / "pcam" / "camelyonpatch_level_2_split_valid_x.h5").is_file()
    assert "(seed 3)" in (tmp_path / "s" / "README.md").read_text()


def test_info_json(sample_dir, capsys):
    assert main(["data", "info", str(sample_dir / "medmnist" / "ihcstain.npz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "medmnist"
    assert info["splits"]["val"]["length"] == 150 and info["splits"]["val"]["image_shape"] == [28, 28, 3]
    assert sum(info["splits"]["train"]["label_counts"].values()) == info["splits"]["train"]["length"]
    assert [f["path"].rsplit("/", 1)[-1] for f in info["files"]] == ["ihcstain.npz", "ihcstain.json"]


def test_info_text(sample_dir, capsys):
    assert main(["data", "info", str(sample_dir / "pcam")]) == 0
    out = capsys.readouterr().out
    assert "format: pcam" in out and "split valid: 64 images of shape [96, 96, 3], task binary" in out
    assert "labels: normal 32, tumor 32" in out
    assert "differs from the official" in out and "md5 " in out
    # the embedded sample is not the real dataset: say the mismatch is expected, once
    assert "expected, see the note below" in out
    assert out.count("note: this is medssl's embedded sample") == 1 and str(sample_dir / "README.md") in out


def test_info_on_other_data_does_not_call_it_the_sample(sample_dir, tmp_path, capsys):
    import shutil

    shutil.copytree(sample_dir / "pcam", tmp_path / "pcam")  # the same files, outside the sample folder
    assert main(["data", "info", str(tmp_path / "pcam"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["embedded_sample"] is None
    assert main(["data", "info", str(tmp_path / "pcam")]) == 0
    out = capsys.readouterr().out
    assert "differs from the official" in out and "expected" not in out and "note:" not in out


def test_stats_yaml_ready(sample_dir, capsys):
    assert main(["data", "stats", str(sample_dir / "stl10"), "--split", "test", "--max-images", "0"]) == 0
    out = capsys.readouterr().out
    parsed = yaml.safe_load(out)
    mean, std = channel_stats(open_dataset(sample_dir / "stl10", split="test"))
    np.testing.assert_allclose(parsed["mean"], mean, atol=6e-5)
    np.testing.assert_allclose(parsed["std"], std, atol=6e-5)
    assert "20 of 20 images" in out


def test_stats_shows_progress_unless_told_not_to(sample_dir, capsys):
    assert main(["data", "stats", str(sample_dir / "pcam"), "--max-images", "10"]) == 0
    assert "medssl: stats train: 10/10 img (100 %), done in" in capsys.readouterr().err
    assert main(["data", "stats", str(sample_dir / "pcam"), "--max-images", "10", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_stats_default_split_and_json(sample_dir, capsys):
    assert main(["data", "stats", str(sample_dir / "pcam"), "--max-images", "10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "train" and res["images"] == 10 and len(res["mean"]) == 3


def test_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path), "--split", "train"]) == 2
    assert "cannot tell the dataset format" in capsys.readouterr().err


def test_data_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(w in out for w in ("sample", "info", "stats"))


@pytest.mark.slow
def test_console_script_help():
    script = Path(sys.executable).with_name("medssl")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "medssl"]
    res = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "data" in res.stdout
