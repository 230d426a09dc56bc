"""The embedded sample (medssl/data/sample.py): real formats, documented labels, no leakage, offline, deterministic."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2hed

from medssl.data import sample as S
from medssl.data.open import open_dataset
from medssl.data.pcam import PCAM


def test_layout_and_size(sample_dir: Path):
    expected = [
        "README.md",
        "pcam/camelyonpatch_level_2_split_train_x.h5",
        "pcam/camelyonpatch_level_2_split_valid_y.h5",
        "pcam/camelyonpatch_level_2_split_test_meta.csv",
        "medmnist/ihcstain.npz",
        "medmnist/ihcstain.json",
        "stl10/stl10_binary/train_X.bin",
        "stl10/stl10_binary/unlabeled_X.bin",
        "stl10/stl10_binary/class_names.txt",
        "folder/labels.csv",
    ]
    for rel in expected:
        assert (sample_dir / rel).is_file(), rel
    total = sum(p.stat().st_size for p in sample_dir.rglob("*") if p.is_file())
    assert total < 10 * 2**20
    readme = (sample_dir / "README.md").read_text()
    for word in ("pcam/", "medmnist/", "stl10/", "folder/", "ihc.png", "rgb2hed", "not STL-10's classes"):
        assert word in readme


def test_pcam_labels_follow_documented_rule(sample_dir: Path):
    """Recompute each label from the stored tile alone: >= half of its centre 32x32 DAB-positive."""
    for split in ("train", "valid", "test"):
        ds = PCAM(sample_dir / "pcam", split)
        labels = ds.labels()
        assert set(labels.tolist()) == {0, 1} and (labels == 1).sum() == (labels == 0).sum()
        for i in range(len(ds)):
            img, lab = ds[i]
            dab = rgb2hed(img[32:64, 32:64])[..., 2] > S.DAB_THRESHOLD
            assert lab == int(dab.mean() >= S.CENTRE_POSITIVE_FRACTION)


def test_pcam_tiles_are_real_ihc_pixels_from_disjoint_regions(sample_dir: Path):
    ihc = S.packaged_image("ihc.png")
    boxes = {}
    for split in ("train", "valid", "test"):
        ds = PCAM(sample_dir / "pcam", split)
        meta = ds.meta()
        ys, xs, ks = (np.array(meta[c], dtype=int) for c in ("coord_y", "coord_x", "d4"))
        for i in (0, len(ds) - 1):
            np.testing.assert_array_equal(ds[i][0], S.d4(ihc[ys[i] : ys[i] + 96, xs[i] : xs[i] + 96], ks[i]))
        boxes[split] = list(zip(ys, xs))
    # no pixel of a train tile lies in a valid/test tile (and valid vs test)
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        for ya, xa in boxes[a]:
            for yb, xb in boxes[b]:
                assert abs(ya - yb) >= 96 or abs(xa - xb) >= 96


def test_medmnist_and_folder_read_by_their_loaders(sample_dir: Path):
    for split in ("train", "val", "test"):
        mm = open_dataset(sample_dir / "medmnist" / "ihcstain.npz", split=split)
        assert mm.task == "multiclass" and list(mm.class_names) == list(S.STAIN_CLASSES)
        assert mm[0][0].shape == (28, 28, 3) and set(mm.labels().tolist()) == {0, 1, 2}
        fo = open_dataset(sample_dir / "folder", split=split)
        assert fo[0][0].shape == (64, 64, 3) and set(fo.labels().tolist()) == {0, 1, 2}


def test_folder_labels_follow_documented_rule(sample_dir: Path):
    fo = open_dataset(sample_dir / "folder", split="test")
    for i in range(0, len(fo), 5):
        img, lab = fo[i]
        dab, tissue = S.stain_maps(img)
        expected = 0 if tissue.mean() < S.TISSUE_FRACTION else (2 if dab.mean() >= S.DAB_TILE_FRACTION else 1)
        assert lab == expected


def test_stl10_classes_name_source_photos(sample_dir: Path):
    ds = open_dataset(sample_dir / "stl10", split="train")
    assert list(ds.class_names) == ["astronaut", "coffee", "chelsea", "rocket", "motorcycle_left"]
    assert np.bincount(ds.labels()).tolist() == [S.STL_TRAIN_PER_CLASS] * 5
    assert len(open_dataset(sample_dir / "stl10", split="unlabeled")) == S.STL_UNLABELED


def test_offline_deterministic_and_seeded(sample_dir: Path, tmp_path: Path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("write_sample tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    summary = S.write_sample(tmp_path / "again", seed=0)
    for rel in ("pcam/camelyonpatch_level_2_split_train_x.h5", "stl10/stl10_binary/unlabeled_X.bin", "folder/labels.csv", "README.md"):
        assert (tmp_path / "again" / rel).read_bytes() == (sample_dir / rel).read_bytes(), rel
    with np.load(sample_dir / "medmnist/ihcstain.npz") as a, np.load(tmp_path / "again/medmnist/ihcstain.npz") as b:
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert summary["pcam"]["valid"]["tumor"] > 0 and summary["stl10"]["unlabeled"]["unlabelled"] == S.STL_UNLABELED

    S.write_sample(tmp_path / "other", seed=1)
    a = PCAM(sample_dir / "pcam", "train")
    b = PCAM(tmp_path / "other" / "pcam", "train")
    assert not all(np.array_equal(a[i][0], b[i][0]) for i in range(min(len(a), len(b))))


def test_missing_packaged_image_is_a_clear_error():
    with pytest.raises(S.DataError, match="no_such_image.png"):
        S.packaged_image("no_such_image.png")


def test_d4_is_the_dihedral_group():
    img = np.arange(12).reshape(3, 4)
    variants = [S.d4(img, k) for k in range(8)]
    assert len({v.tobytes() + bytes(v.shape) for v in variants}) == 8
    np.testing.assert_array_equal(variants[0], img)


def test_embedded_sample_root_is_found_from_any_file_in_it(sample_dir: Path, tmp_path: Path):
    from medssl.data.sample import embedded_sample_root

    for inside in ("", "pcam", "medmnist/ihcstain.npz", "stl10/stl10_binary/test_X.bin"):
        assert embedded_sample_root(sample_dir / inside) == sample_dir.absolute()
    assert embedded_sample_root(tmp_path) is None
