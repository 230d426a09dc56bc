"""Dataset description and channel statistics (medssl/data/info.py)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from medssl.data.info import channel_stats, describe_path, label_counts
from medssl.data.open import open_dataset
from medssl.data.pcam import PCAM
from medssl.errors import DataError
from conftest import shared_file


def test_describe_pcam(sample_dir):
    info = describe_path(sample_dir / "pcam")
    assert info["format"] == "pcam" and list(info["splits"]) == ["train", "valid", "test"]
    for split, d in info["splits"].items():
        ds = PCAM(sample_dir / "pcam", split)
        labels = ds.labels()
        assert d["length"] == len(ds) and d["image_shape"] == [96, 96, 3] and d["task"] == "binary"
        assert d["label_counts"] == {"normal": int((labels == 0).sum()), "tumor": int((labels == 1).sum())}
    names = [f["path"].rsplit("/", 1)[-1] for f in info["files"]]
    assert "camelyonpatch_level_2_split_train_x.h5" in names and "camelyonpatch_level_2_split_test_meta.csv" in names
    for f in info["files"]:
        data = open(f["path"], "rb").read()
        assert f["bytes"] == len(data) and f["md5"] == hashlib.md5(data).hexdigest()
        if f["path"].endswith(".h5"):  # official names, but not the official bytes
            assert f["matches_official"] is False and len(f["official_md5"]) == 32


def test_describe_stl10_unlabelled_and_missing_split(sample_dir):
    info = describe_path(sample_dir / "stl10", checksum=False)
    assert info["splits"]["unlabeled"]["label_counts"]["unlabelled"] == 40
    assert info["splits"]["unlabeled"]["task"] is None
    assert all("md5" not in f for f in info["files"])
    assert {f["path"].rsplit("/", 1)[-1] for f in info["files"]} >= {"train_X.bin", "class_names.txt", "unlabeled_X.bin"}
    with_md5 = describe_path(sample_dir / "stl10")["files"]
    official = {f["path"].rsplit("/", 1)[-1]: f.get("matches_official") for f in with_md5}
    assert official["train_X.bin"] is False and official["unlabeled_X.bin"] is None  # no published md5


def test_describe_reports_a_missing_split(sample_dir, tmp_path):
    import shutil

    shutil.copytree(sample_dir / "pcam", tmp_path / "pcam")
    (tmp_path / "pcam" / "camelyonpatch_level_2_split_test_x.h5").unlink()
    info = describe_path(tmp_path / "pcam")
    assert "camelyonpatch_level_2_split_test_x.h5" in info["splits"]["test"]["error"]
    assert info["splits"]["train"]["length"] == 104


def test_describe_nothing_opens_raises(tmp_path):
    (tmp_path / "camelyonpatch_level_2_split_train_x.h5").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"camelyonpatch_level_2_split_train"):
        describe_path(tmp_path)


@pytest.mark.shared_data
def test_official_medmnist_md5_matches():
    info = describe_path(shared_file("medmnist/bloodmnist.npz"))
    (rec,) = info["files"]
    assert rec["matches_official"] is True and rec["md5"] == "7053d0359d879ad8a5505303e11de1dc"
    assert info["splits"]["test"]["length"] == 3421 and sum(info["splits"]["test"]["label_counts"].values()) == 3421


def test_channel_stats_match_numpy(sample_dir):
    ds = PCAM(sample_dir / "pcam", "valid")
    stack = np.stack([ds[i][0] for i in range(len(ds))]).astype(np.float64) / 255.0
    mean, std = channel_stats(ds)
    np.testing.assert_allclose(mean, stack.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(std, stack.std(axis=(0, 1, 2)), atol=1e-12)
    assert len(mean) == 3


def test_channel_stats_subset_is_evenly_spaced(sample_dir):
    ds = open_dataset(sample_dir / "stl10", split="train")  # sorted by class: the first 5 would be one photo
    idx = np.linspace(0, len(ds) - 1, 5).round().astype(int)
    stack = np.stack([ds[int(i)][0] for i in idx]).astype(np.float64) / 255.0
    mean, std = channel_stats(ds, max_images=5)
    np.testing.assert_allclose(mean, stack.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(std, stack.std(axis=(0, 1, 2)), atol=1e-12)


def test_channel_stats_max_images_must_be_a_count(sample_dir):
    from medssl.data.info import images_used
    from medssl.errors import ConfigError

    ds = open_dataset(sample_dir / "stl10", split="test")
    for bad in (-5, -1, 2.5, True):
        with pytest.raises(ConfigError, match=r"max_images \(--max-images\) must be a whole number >= 0"):
            channel_stats(ds, max_images=bad)
    assert channel_stats(ds, max_images=0) == channel_stats(ds, max_images=None)  # 0 = every image
    assert images_used(len(ds), 0) == images_used(len(ds), None) == images_used(len(ds), 10**6) == len(ds)
    assert images_used(len(ds), 7) == 7


@pytest.mark.shared_data
def test_channel_stats_grayscale():
    ds = open_dataset(shared_file("medmnist/breastmnist.npz"), split="val")
    mean, std = channel_stats(ds, max_images=20)
    assert len(mean) == len(std) == 1 and 0 < mean[0] < 1 and 0 < std[0] < 0.5


def test_label_counts_multilabel_and_unlabelled():
    from medssl.data.base import MedicalImageDataset

    class Tiny(MedicalImageDataset):
        class_names = ("a", "b")
        num_classes = 2

        def __init__(self, labels, task):
            self._l, self.task = np.asarray(labels), task

        def __len__(self):
            return len(self._l)

        def labels(self):
            return self._l

    assert label_counts(Tiny([[1, 0], [1, 1], [0, 0]], "multilabel")) == {"a": 2, "b": 1}
    assert label_counts(Tiny([0, 1, 1, -1], "binary")) == {"a": 1, "b": 2, "unlabelled": 1}
