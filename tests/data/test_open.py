"""Format auto-detection (medssl/data/open.py) on the embedded sample."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from medssl.data import open_dataset
from medssl.data.open import detect
from medssl.data.pcam import PCAM
from medssl.data.stl10 import STL10
from medssl.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "rel, split, kind, expect_split, length",
    [
        ("pcam", None, "PCAM", "train", 104),
        ("pcam", "val", "PCAM", "valid", 64),
        ("pcam/camelyonpatch_level_2_split_test_x.h5", None, "PCAM", "test", 34),
        ("pcam/camelyonpatch_level_2_split_test_y.h5", "train", "PCAM", "train", 104),
        ("stl10", None, "STL10", "train", 40),
        ("stl10/stl10_binary", "unlabeled", "STL10", "unlabeled", 40),
        ("stl10/stl10_binary/test_X.bin", None, "STL10", "test", 20),
        ("medmnist/ihcstain.npz", "test", "MedMNISTDataset", "test", 195),
        ("medmnist", "val", "MedMNISTDataset", "val", 150),
        ("folder/labels.csv", "val", "ImageFolderDataset", "val", 35),
        ("folder", None, "ImageFolderDataset", "", 196),
    ],
)
def test_detects_each_format(sample_dir, rel, split, kind, expect_split, length):
    ds = open_dataset(sample_dir / rel, split=split)
    assert type(ds).__name__ == kind and ds.split == expect_split and len(ds) == length
    assert ds[0][0].dtype == np.uint8


def test_folder_of_class_folders_without_csv(sample_dir, tmp_path):
    shutil.copytree(sample_dir / "folder", tmp_path / "f")
    (tmp_path / "f" / "labels.csv").unlink()
    assert detect(tmp_path / "f") == {"name": "folder", "root": str(tmp_path / "f")}
    ds = open_dataset(tmp_path / "f")
    assert list(ds.class_names) == ["background", "dab_negative_tissue", "dab_positive"] and len(ds) == 196


def test_mapping_and_yaml_specs(sample_dir, tmp_path):
    cfg = {"name": "pcam", "root": str(sample_dir / "pcam"), "split": "test"}
    assert isinstance(open_dataset(cfg), PCAM) and open_dataset(cfg).split == "test"
    assert open_dataset(cfg, split="train").split == "train"  # split argument wins
    assert open_dataset({"data": cfg}).split == "test"
    nested = tmp_path / "run.yaml"
    nested.write_text(yaml.safe_dump({"data": {"name": "stl10", "root": str(sample_dir / "stl10"), "split": "test"}, "seed": 3}))
    assert isinstance(open_dataset(nested), STL10) and len(open_dataset(nested)) == 20
    flat = tmp_path / "ds.yml"
    flat.write_text(yaml.safe_dump(cfg))
    assert len(open_dataset(flat, split="valid")) == 64


def test_bad_yaml(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("seed: 1\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: expected a 'data:' mapping"):
        open_dataset(p)
    p.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: not valid YAML at line 2"):
        open_dataset(p)


def test_unknown_config_key(sample_dir):
    with pytest.raises(ConfigError, match=r"unknown key 'flag' in dataset 'pcam'\. Valid keys: root, split"):
        open_dataset({"name": "pcam", "root": str(sample_dir / "pcam"), "flag": "x"})


def test_unknown_directory_lists_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"cannot tell the dataset format of directory .*\.npz.*camelyonpatch.*stl10_binary.*images"):
        open_dataset(tmp_path)


def test_unknown_file_and_missing_path(tmp_path):
    (tmp_path / "a.txt").write_text("hi")
    with pytest.raises(DataError, match=r"format of file .*a\.txt"):
        open_dataset(tmp_path / "a.txt")
    with pytest.raises(DataError, match=r"nothing\.npz does not exist"):
        open_dataset(tmp_path / "nothing.npz")


def test_gz_hint(tmp_path):
    (tmp_path / "camelyonpatch_level_2_split_train_x.h5.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError, match=r"gunzip -k .*train_x\.h5\.gz"):
        open_dataset(tmp_path / "camelyonpatch_level_2_split_train_x.h5")
    with pytest.raises(DataError, match="gunzip"):
        open_dataset(tmp_path / "camelyonpatch_level_2_split_train_x.h5.gz")
    with pytest.raises(DataError, match="gunzip"):  # directory detected as PCAM; loader names the .gz
        open_dataset(tmp_path)


def test_several_npz(sample_dir, tmp_path):
    for name in ("a.npz", "b.npz"):
        shutil.copy(sample_dir / "medmnist" / "ihcstain.npz", tmp_path / name)
    with pytest.raises(DataError, match=r"several \.npz files \(a\.npz, b\.npz\)"):
        open_dataset(tmp_path)


def test_unrecognised_h5_name(tmp_path):
    (tmp_path / "patches.h5").write_bytes(b"")
    with pytest.raises(DataError, match=r"patches\.h5"):
        open_dataset(tmp_path / "patches.h5")


def test_folder_with_split_subfolders(sample_dir, tmp_path):
    shutil.copytree(sample_dir / "folder" / "background", tmp_path / "f" / "train" / "background")
    shutil.copytree(sample_dir / "folder" / "dab_positive", tmp_path / "f" / "train" / "dab_positive")
    ds = open_dataset(tmp_path / "f", split="train")
    assert list(ds.class_names) == ["background", "dab_positive"] and ds.task == "binary"
