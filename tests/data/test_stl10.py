"""STL-10 binary loading (medssl/data/stl10.py) on real STL-10 images written in the official layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from medssl.data.stl10 import OFFICIAL_CLASS_NAMES, STL10, write_stl10_split
from medssl.errors import DataError
from medssl.registry import DATASETS
from conftest import shared_file


@pytest.fixture(scope="module")
def real() -> dict:
    with np.load(shared_file("stl10/stl10_real_samples.npz"), allow_pickle=False) as z:
        labelled = z["seg_originals_images"]
        names = [str(s) for s in z["seg_originals_stl10_class"]]
        unlabeled = z["unlabeled_examples_images"][:12]
    return {"images": labelled, "labels": np.array([OFFICIAL_CLASS_NAMES.index(n) for n in names]), "unlabeled": unlabeled}


@pytest.fixture()
def stl_root(tmp_path: Path, real) -> Path:
    write_stl10_split(tmp_path, "train", real["images"][:6], real["labels"][:6], class_names=OFFICIAL_CLASS_NAMES)
    write_stl10_split(tmp_path, "test", real["images"][6:], real["labels"][6:])
    write_stl10_split(tmp_path, "unlabeled", real["unlabeled"])
    return tmp_path


def _official_read(path: Path) -> np.ndarray:
    """The reference reader of the STL-10 authors' python code."""
    return np.fromfile(path, dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)


def test_items_match_official_reader_and_originals(stl_root, real):
    ds = DATASETS.build({"name": "stl10", "root": str(stl_root), "split": "train"})
    ref = _official_read(stl_root / "stl10_binary" / "train_X.bin")
    y = np.fromfile(stl_root / "stl10_binary" / "train_y.bin", dtype=np.uint8)
    assert len(ds) == 6 and ds.task == "multiclass" and ds.num_classes == 10 and ds.in_channels == 3
    assert list(ds.class_names) == list(OFFICIAL_CLASS_NAMES)
    for i in range(6):
        img, lab = ds[i]
        assert img.dtype == np.uint8 and img.shape == (96, 96, 3) and img.flags.c_contiguous
        np.testing.assert_array_equal(img, ref[i])
        np.testing.assert_array_equal(img, real["images"][i])
        assert lab == int(y[i]) - 1 == real["labels"][i]
    np.testing.assert_array_equal(ds.labels(), real["labels"][:6])


def test_reads_column_major_channels_upright(tmp_path, real):
    """A file written byte by byte as the STL-10 page describes (each channel column-major)."""
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    imgs = real["images"][:3]
    raw = b"".join(img[:, :, c].flatten(order="F").tobytes() for img in imgs for c in range(3))
    (folder / "test_X.bin").write_bytes(raw)
    (folder / "test_y.bin").write_bytes(bytes([1, 2, 3]))
    ds = STL10(folder, "test")  # the stl10_binary folder itself is accepted as root
    for i in range(3):
        np.testing.assert_array_equal(ds[i][0], imgs[i])
    assert ds.labels().tolist() == [0, 1, 2]


def test_unlabeled_and_train_plus_unlabeled(stl_root, real):
    unl = STL10(stl_root, "unlabeled")
    assert unl.task is None and len(unl) == 12 and (unl.labels() == -1).all()
    np.testing.assert_array_equal(unl[5][0], real["unlabeled"][5])
    both = STL10(stl_root, "train+unlabelled")
    assert both.split == "train+unlabeled" and len(both) == 18 and both.task == "multiclass"
    assert both.labels()[:6].tolist() == real["labels"][:6].tolist() and (both.labels()[6:] == -1).all()
    np.testing.assert_array_equal(both[5][0], real["images"][5])
    np.testing.assert_array_equal(both[6][0], real["unlabeled"][0])
    assert both[17][1] == -1
    np.testing.assert_array_equal(both[-1][0], real["unlabeled"][11])


def test_custom_and_missing_class_names(stl_root):
    (stl_root / "stl10_binary" / "class_names.txt").unlink()
    assert list(STL10(stl_root, "test").class_names) == list(OFFICIAL_CLASS_NAMES)
    (stl_root / "stl10_binary" / "class_names.txt").write_text("a\nb\n\n")
    with pytest.raises(DataError, match=r"test_y\.bin holds labels .*expected 1\.\.2"):
        STL10(stl_root, "test")


def test_pickle_has_no_memmap(stl_root, real):
    ds = STL10(stl_root, "unlabeled")
    ds[0]
    assert ds._maps is not None
    blob = pickle.dumps(ds)
    assert len(blob) < 4096  # no image bytes travel to spawned workers
    clone = pickle.loads(blob)
    assert clone._maps is None
    np.testing.assert_array_equal(clone[2][0], real["unlabeled"][2])


def test_missing_file_names_file_directory_and_source(tmp_path):
    (tmp_path / "stl10_binary").mkdir()
    with pytest.raises(DataError, match=r"train_X\.bin.*cs\.stanford\.edu/~acoates/stl10") as e:
        STL10(tmp_path, "train")
    assert "stl10_binary" in str(e.value)


def test_missing_labels_file(stl_root):
    (stl_root / "stl10_binary" / "test_y.bin").unlink()
    with pytest.raises(DataError, match=r"test_y\.bin"):
        STL10(stl_root, "test")


def test_archive_not_extracted(tmp_path):
    (tmp_path / "stl10_binary.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError, match=r"stl10_binary\.tar\.gz.*tar -xzf"):
        STL10(tmp_path, "train")


def test_wrong_size(stl_root):
    x = stl_root / "stl10_binary" / "train_X.bin"
    x.write_bytes(x.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train_X\.bin has 165788 bytes, not a positive multiple of 3\*96\*96"):
        STL10(stl_root, "train")


def test_label_count_mismatch(stl_root):
    (stl_root / "stl10_binary" / "train_y.bin").write_bytes(bytes([1] * 5))
    with pytest.raises(DataError, match=r"train_y\.bin holds 5 labels but train_X\.bin holds 6 images"):
        STL10(stl_root, "train")


def test_unknown_split(stl_root):
    with pytest.raises(DataError, match="unknown split 'val'"):
        STL10(stl_root, "val")


def test_writer_rejects_bad_input(tmp_path, real):
    with pytest.raises(DataError, match="needs labels"):
        write_stl10_split(tmp_path, "train", real["images"][:2])
    with pytest.raises(DataError, match=r"\(N, 96, 96, 3\) uint8"):
        write_stl10_split(tmp_path, "unlabeled", real["images"][:2, :64])
    with pytest.raises(DataError, match="split must be one of"):
        write_stl10_split(tmp_path, "val", real["images"][:2], [0, 1])
