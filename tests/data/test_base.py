"""The dataset contract helpers in medssl/data/base.py."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from medssl.data.base import MedicalImageDataset, as_hwc, check_image_array, require_file
from medssl.errors import DataError


class _Toy(MedicalImageDataset):
    def __init__(self, labels: np.ndarray, task: str | None) -> None:
        self._labels = labels
        self.task = task
        self.num_classes = 3
        self.class_names = ["a", "b", "c"]
        self.split = "train"

    def __len__(self) -> int:
        return len(self._labels)

    def _get_image(self, index: int) -> np.ndarray:
        return np.full((2, 2, 3), index, np.uint8)

    def labels(self) -> np.ndarray:
        return self._labels


def test_require_file_returns_existing_path(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"1")
    assert require_file(str(f), "thing", "how") == f


def test_require_file_missing_names_file_dir_and_hint(tmp_path):
    with pytest.raises(DataError, match=rf"thing: expected file y\.bin \(not in {tmp_path}\)\. download it"):
        require_file(tmp_path / "y.bin", "thing", "download it")


def test_require_file_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"directory .*nope does not exist"):
        require_file(tmp_path / "nope" / "y.bin", "thing", "how")


def test_require_file_gz_hint(tmp_path):
    with gzip.open(tmp_path / "y.bin.gz", "wb") as f:
        f.write(b"1")
    with pytest.raises(DataError, match=r"found y\.bin\.gz but not y\.bin.*gunzip -k"):
        require_file(tmp_path / "y.bin", "thing", "how")


def test_require_file_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match=r"is a directory"):
        require_file(tmp_path, "thing", "how")


@pytest.mark.parametrize(
    "arr, pattern",
    [
        (np.zeros((4, 4), np.uint8), r"shape \(N, H, W\)"),
        (np.zeros((2, 4, 4, 4), np.uint8), r"1 or 3 channels"),
        (np.zeros((2, 4, 4), np.uint16), r"dtype uint8, got uint16"),
        ([1, 2, 3], r"got shape None"),
    ],
)
def test_check_image_array_rejects(arr, pattern):
    with pytest.raises(DataError, match=r"src: .*" + pattern):
        check_image_array(arr, "src")


def test_check_image_array_channels():
    check_image_array(np.zeros((2, 4, 4), np.uint8), "src", expect_channels=1)
    check_image_array(np.zeros((2, 4, 4, 3), np.uint8), "src", expect_channels=3)
    with pytest.raises(DataError, match=r"expected 3 channel\(s\)"):
        check_image_array(np.zeros((2, 4, 4), np.uint8), "src", expect_channels=3)


def test_as_hwc():
    assert as_hwc(np.zeros((5, 6), np.uint8)).shape == (5, 6, 1)
    rgb = np.zeros((5, 6, 3), np.uint8)
    assert as_hwc(rgb) is rgb


def test_getitem_int_labels_and_negative_index():
    ds = _Toy(np.array([0, 2, 1]), "multiclass")
    img, lab = ds[-1]
    assert img[0, 0, 0] == 2 and lab == 1 and type(lab) is int
    assert ds.is_labelled
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(IndexError):
        ds[-4]


def test_getitem_multilabel_vector_and_unlabelled():
    ds = _Toy(np.array([[1, 0, 1], [0, 0, 0]], np.uint8), "multilabel")
    _, lab = ds[0]
    assert lab.dtype == np.float32 and lab.tolist() == [1.0, 0.0, 1.0]
    un = _Toy(np.array([-1, -1]), None)
    assert un[1][1] == -1 and not un.is_labelled


def test_describe():
    d = _Toy(np.array([0, 1]), "multiclass").describe()
    assert d == {
        "dataset": "_Toy",
        "split": "train",
        "length": 2,
        "task": "multiclass",
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "in_channels": 3,
    }
