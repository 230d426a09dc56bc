"""PCAM HDF5 loading (medssl/data/pcam.py) on PCAM-layout files built from real H&E tiles."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from medssl.data.pcam import PCAM, split_files, write_pcam_split
from medssl.errors import DataError
from medssl.registry import DATASETS
from conftest import shared_file


@pytest.fixture(scope="module")
def he_tiles() -> tuple[np.ndarray, np.ndarray]:
    """24 real H&E tiles and a real 0/1 property as label (tile comes from CMU-1)."""
    with np.load(shared_file("histology/he_patches_96x96_unlabeled.npz"), allow_pickle=False) as z:
        images, source = z["images"], z["source"]
    idx = np.linspace(0, len(images) - 1, 24).round().astype(int)
    return images[idx], (source[idx] == "cmu_small_region_HE").astype(np.int64)


@pytest.fixture()
def pcam_root(tmp_path: Path, he_tiles) -> Path:
    images, labels = he_tiles
    write_pcam_split(tmp_path, "train", images[:16], labels[:16], meta={"wsi": [f"w{i}" for i in range(16)]})
    write_pcam_split(tmp_path, "valid", images[16:], labels[16:])
    return tmp_path


def _direct(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][()]


def test_items_match_direct_h5_read(pcam_root, he_tiles):
    ds = DATASETS.build({"name": "pcam", "root": str(pcam_root), "split": "train"})
    paths = split_files(pcam_root, "train")
    x, y = _direct(paths["x"], "x"), _direct(paths["y"], "y")
    assert x.shape == (16, 96, 96, 3) and y.shape == (16, 1, 1, 1)  # the official layout
    assert len(ds) == 16
    for i in (0, 7, 15, -1):
        img, lab = ds[i]
        assert img.dtype == np.uint8 and img.shape == (96, 96, 3)
        np.testing.assert_array_equal(img, x[i])
        np.testing.assert_array_equal(img, he_tiles[0][:16][i])
        assert lab == int(y[i, 0, 0, 0]) and isinstance(lab, int)
    np.testing.assert_array_equal(ds.labels(), he_tiles[1][:16])
    assert ds.task == "binary" and ds.num_classes == 2 and list(ds.class_names) == ["normal", "tumor"]
    assert ds.in_channels == 3 and ds.image_shape == (96, 96, 3)
    assert ds.meta()["wsi"][3] == "w3" and len(ds.meta()["index"]) == 16
    with pytest.raises(IndexError):
        ds[16]


@pytest.mark.parametrize("alias", ["val", "valid", "validation", "VAL"])
def test_val_aliases(pcam_root, alias):
    ds = PCAM(pcam_root, alias)
    assert ds.split == "valid" and len(ds) == 8 and ds.meta() == {}


def test_handle_opened_lazily_once_per_process(pcam_root):
    ds = PCAM(pcam_root, "train")
    assert ds._h5 is None  # construction validated and closed the files
    ds[0]
    handle = ds._h5
    assert handle is not None and ds._pid == os.getpid()
    for i in range(5):
        ds[i]
    assert ds._h5 is handle  # never re-opened per item
    ds._pid = -1  # what a forked child sees: a different PID
    ds[1]
    assert ds._h5 is not handle and ds._pid == os.getpid()
    ds.close()
    assert ds._h5 is None


def test_pickle_drops_handle(pcam_root):
    ds = PCAM(pcam_root, "train")
    expected = ds[3][0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None and clone._x is None and clone._pid is None
    assert ds._h5 is not None  # the original keeps its handle
    np.testing.assert_array_equal(clone[3][0], expected)
    assert len(pickle.dumps(ds)) < 4096  # labels only, no images


def test_labels_read_without_images(pcam_root):
    ds = PCAM(pcam_root, "train")
    labs = ds.labels()
    labs[:] = 5  # a copy: the dataset is unaffected
    assert set(ds.labels().tolist()) <= {0, 1} and ds._h5 is None


def test_missing_file_names_file_directory_and_source(tmp_path):
    with pytest.raises(DataError, match=r"camelyonpatch_level_2_split_test_x\.h5.*github\.com/basveeling/pcam") as e:
        PCAM(tmp_path, "test")
    assert str(tmp_path) in str(e.value)


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        PCAM(tmp_path / "nowhere", "train")


def test_gz_asks_to_gunzip(pcam_root):
    x = split_files(pcam_root, "train")["x"]
    x.rename(x.with_name(x.name + ".gz"))
    with pytest.raises(DataError, match=r"gunzip.*camelyonpatch_level_2_split_train_x\.h5\.gz"):
        PCAM(pcam_root, "train")


def test_unknown_split(pcam_root):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        PCAM(pcam_root, "dev")


def _rewrite(path: Path, key: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)


def test_wrong_key(pcam_root, he_tiles):
    x = split_files(pcam_root, "train")["x"]
    _rewrite(x, "images", he_tiles[0][:16])
    with pytest.raises(DataError, match=r"train_x\.h5 has no HDF5 dataset 'x'.*images"):
        PCAM(pcam_root, "train")


def test_length_mismatch(pcam_root, he_tiles):
    _rewrite(split_files(pcam_root, "train")["y"], "y", np.zeros((15, 1, 1, 1), np.uint8))
    with pytest.raises(DataError, match=r"16 images but .*train_y\.h5 holds 15 labels"):
        PCAM(pcam_root, "train")


def test_wrong_dtype(pcam_root, he_tiles):
    _rewrite(split_files(pcam_root, "train")["x"], "x", he_tiles[0][:16].astype(np.float32))
    with pytest.raises(DataError, match=r"train_x\.h5 dataset 'x' has dtype float32; expected uint8"):
        PCAM(pcam_root, "train")


def test_wrong_shape(pcam_root, he_tiles):
    chw = np.ascontiguousarray(he_tiles[0][:16].transpose(0, 3, 1, 2))
    _rewrite(split_files(pcam_root, "train")["x"], "x", chw)
    with pytest.raises(DataError, match=r"train_x\.h5 dataset 'x' has shape \(16, 3, 96, 96\)"):
        PCAM(pcam_root, "train")


def test_bad_labels(pcam_root):
    _rewrite(split_files(pcam_root, "train")["y"], "y", np.full((16, 1, 1, 1), 2, np.uint8))
    with pytest.raises(DataError, match=r"train_y\.h5 holds label 2"):
        PCAM(pcam_root, "train")


def test_truncated_file(pcam_root):
    x = split_files(pcam_root, "train")["x"]
    data = x.read_bytes()
    x.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cannot read .*train_x\.h5 as HDF5 \(truncated or corrupt"):
        PCAM(pcam_root, "train")


def test_garbage_file(pcam_root):
    y = split_files(pcam_root, "train")["y"]
    y.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"cannot read .*train_y\.h5 as HDF5"):
        PCAM(pcam_root, "train")


def test_writer_rejects_bad_input(tmp_path, he_tiles):
    with pytest.raises(DataError, match="must be \\(N, H, W, 3\\) uint8"):
        write_pcam_split(tmp_path, "train", he_tiles[0][:2, :, :, 0], [0, 1])
    with pytest.raises(DataError, match="2 images but 3 labels"):
        write_pcam_split(tmp_path, "train", he_tiles[0][:2], [0, 1, 1])


def test_writer_is_deterministic(tmp_path, he_tiles):
    a = write_pcam_split(tmp_path / "a", "test", he_tiles[0][:4], he_tiles[1][:4])
    b = write_pcam_split(tmp_path / "b", "test", he_tiles[0][:4], he_tiles[1][:4])
    assert [p.name for p in a] == ["camelyonpatch_level_2_split_test_x.h5", "camelyonpatch_level_2_split_test_y.h5"]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b))
    shutil.rmtree(tmp_path / "b")


@pytest.mark.parametrize("side, ok", [(2, False), (31, False), (32, True)])
def test_tiles_smaller_than_the_labelled_centre_are_refused(tmp_path, he_tiles, side, ok) -> None:
    write_pcam_split(tmp_path, "train", np.ascontiguousarray(he_tiles[0][:4, :side, :side]), he_tiles[1][:4])
    if ok:
        assert PCAM(tmp_path, "train")[0][0].shape == (side, side, 3)
        return
    with pytest.raises(DataError, match=rf"train_x\.h5 holds {side} x {side} px tiles; PCAM-layout tiles must be "
                                        r"at least 32 x 32 px, because the label describes the centre 32 x 32"):
        PCAM(tmp_path, "train")
