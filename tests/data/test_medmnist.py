"""MedMNIST .npz loading (the medssl/data/medmnist/ package), on the real files in ../shared/data."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from medssl.data.medmnist import (
    MedMNISTDataset,
    official_md5,
    parse_stem,
    write_medmnist_npz,
)
from medssl.errors import ConfigError, DataError
from medssl.registry import DATASETS
from conftest import shared_file

pytestmark = pytest.mark.shared_data


def _direct(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return z[f"{split}_images"], z[f"{split}_labels"]


def _retina_crops(n: int, size: int) -> np.ndarray:
    """Real fundus pixels (scikit-image ships retina.jpg offline), ``n`` tiles of ``size``."""
    import skimage.data

    img = skimage.data.retina()
    return np.stack([img[400 + 30 * i : 400 + 30 * i + size, 500 : 500 + size] for i in range(n)])


@pytest.fixture()
def breast_copy(tmp_path: Path) -> Path:
    """A writable copy of the real BreastMNIST file (grayscale, 780 images)."""
    dst = tmp_path / "breastmnist.npz"
    shutil.copyfile(shared_file("medmnist/breastmnist.npz"), dst)
    return dst


# -- real files -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flag, split, task, channels, n_classes",
    [
        ("bloodmnist", "test", "multiclass", 3, 8),
        ("retinamnist", "val", "ordinal", 3, 5),
        ("breastmnist", "train", "binary", 1, 2),
        ("pneumoniamnist", "test", "binary", 1, 2),
    ],
)
def test_real_files_match_direct_load(flag, split, task, channels, n_classes):
    path = shared_file(f"medmnist/{flag}.npz")
    ds = DATASETS.build({"name": "medmnist", "root": str(path.parent), "flag": flag, "split": split})
    images, labels = _direct(path, split)
    assert (len(ds), ds.task, ds.in_channels, ds.num_classes) == (len(images), task, channels, n_classes)
    assert len(ds.class_names) == n_classes and all(isinstance(c, str) for c in ds.class_names)
    np.testing.assert_array_equal(ds.labels(), labels[:, 0].astype(np.int64))
    for i in (0, len(ds) // 2, len(ds) - 1):
        img, lab = ds[i]
        assert img.dtype == np.uint8 and img.shape == (28, 28, channels) and img.flags.c_contiguous
        np.testing.assert_array_equal(img.reshape(images[i].shape), images[i])
        assert type(lab) is int and lab == labels[i, 0]


def test_official_class_names_and_valid_alias():
    path = shared_file("medmnist/bloodmnist.npz")
    ds = MedMNISTDataset(flag="bloodmnist", root=path.parent, split="valid")
    assert ds.split == "val" and len(ds) == 1712
    assert ds.class_names[0] == "basophil" and ds.class_names[7] == "platelet"


@pytest.mark.parametrize("flag", ["bloodmnist", "retinamnist"])
def test_md5_verify_passes_on_official_files(flag):
    path = shared_file(f"medmnist/{flag}.npz")
    ds = MedMNISTDataset(flag=flag, root=path.parent, split="val", verify=True)
    assert len(ds) > 0


def test_md5_verify_fails_on_resaved_file():
    path = shared_file("medmnist/breastmnist.npz")  # same pixels, re-saved: md5 differs
    with pytest.raises(DataError, match=r"breastmnist\.npz: md5 24d188fa.* differs from the official"):
        MedMNISTDataset(flag="breastmnist", root=path.parent, verify=True)


def test_official_md5():
    assert official_md5("bloodmnist") == "7053d0359d879ad8a5505303e11de1dc"
    assert official_md5("BloodMNIST", 28) == "7053d0359d879ad8a5505303e11de1dc"
    assert official_md5("bloodmnist", 64) == "2b94928a2ae4916078ca51e05b6b800b"
    assert official_md5("mynewmnist") is None


def test_parse_stem():
    assert parse_stem("a/bloodmnist_224.npz") == ("bloodmnist", 224)
    assert parse_stem("bloodmnist.npz") == ("bloodmnist", None)
    assert parse_stem("pathmnist_train_first1000.npz") == ("pathmnist_train_first1000", None)


def test_subset_file_lists_its_splits():
    path = shared_file("medmnist/pathmnist_train_first1000.npz")
    ds = MedMNISTDataset(flag="pathmnist", path=path, split="train")
    assert len(ds) == 1000 and ds.num_classes == 9 and set(np.unique(ds.labels())) == set(range(9))
    with pytest.raises(DataError, match=r"pathmnist_train_first1000\.npz: no key 'test_images'.*splits \['train'\]"):
        MedMNISTDataset(flag="pathmnist", path=path, split="test")


# -- memory-mapped path -------------------------------------------------------------------------
def _copies(folder: Path, split: str, stem: str = "breastmnist") -> list[Path]:
    """The .npy memory-map copies of one split in ``folder``."""
    return sorted(folder.glob(f"{stem}.{split}_images.*.npy"))


def test_mmap_same_pixels_and_cache_reused(breast_copy):
    ram = MedMNISTDataset(path=breast_copy, split="test", mmap=False)
    mm = MedMNISTDataset(path=breast_copy, split="test", mmap=True)
    (cache,) = _copies(breast_copy.parent, "test")
    assert mm.describe()["mmap"] and not ram.describe()["mmap"]
    assert not _copies(breast_copy.parent, "train")  # only the asked split
    for i in range(len(ram)):
        np.testing.assert_array_equal(mm[i][0], ram[i][0])
    np.testing.assert_array_equal(mm.labels(), ram.labels())
    mtime = cache.stat().st_mtime_ns
    again = MedMNISTDataset(path=breast_copy, split="test", mmap=True)
    assert _copies(breast_copy.parent, "test") == [cache] and cache.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again[5][0], ram[5][0])
    # items are private copies: writing into one does not touch the map
    img = again[5][0]
    img[:] = 0
    np.testing.assert_array_equal(again[5][0], ram[5][0])


def _rewrite_val(path: Path, images: np.ndarray) -> None:
    """Replace the val images of ``path`` (same shape, other pixels), keeping the other keys."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["val_images"] = images
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("older", [True, False], ids=["older-mtime", "newer-mtime"])
def test_mmap_cache_follows_the_npz_content_not_its_timestamp(breast_copy, older):
    """A replaced npz gets a fresh copy even when it carries an older mtime than the
    copy (as ``cp -p`` or ``tar`` leave it): the copy is keyed by content."""
    first = MedMNISTDataset(path=breast_copy, split="val", mmap=True)
    (old_copy,) = _copies(breast_copy.parent, "val")
    original = first[0][0].copy()
    flipped = _direct(breast_copy, "val")[0][:, ::-1, :].copy()
    _rewrite_val(breast_copy, flipped)
    stamp = old_copy.stat().st_mtime + (-1000 if older else 1000)
    os.utime(breast_copy, (stamp, stamp))
    second = MedMNISTDataset(path=breast_copy, split="val", mmap=True)
    np.testing.assert_array_equal(second[0][0][..., 0], flipped[0])
    assert not np.array_equal(second[0][0], original)
    (new_copy,) = _copies(breast_copy.parent, "val")  # the stale copy is gone
    assert new_copy != old_copy


def test_mmap_cache_survives_a_copy_with_a_new_timestamp(breast_copy, tmp_path):
    """The same bytes under a new mtime (a fresh ``cp``) reuse the copy: no rebuild."""
    MedMNISTDataset(path=breast_copy, split="val", mmap=True, cache_dir=tmp_path / "cache")
    (copy,) = _copies(tmp_path / "cache", "val")
    stamp = copy.stat().st_mtime_ns
    later = copy.stat().st_mtime + 1000
    os.utime(breast_copy, (later, later))
    ds = MedMNISTDataset(path=breast_copy, split="val", mmap=True, cache_dir=tmp_path / "cache")
    assert _copies(tmp_path / "cache", "val") == [copy] and copy.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(ds[1][0][..., 0], _direct(breast_copy, "val")[0][1])


def test_mmap_cache_of_medssl_0_1_is_replaced(breast_copy):
    """An un-keyed copy left by medssl 0.1.0 (reused by mtime) is never read, and is removed."""
    legacy = breast_copy.parent / "breastmnist.val_images.npy"
    np.save(legacy, np.zeros((78, 28, 28), np.uint8))
    ds = MedMNISTDataset(path=breast_copy, split="val", mmap=True)
    assert not legacy.exists() and len(_copies(breast_copy.parent, "val")) == 1
    np.testing.assert_array_equal(ds[0][0][..., 0], _direct(breast_copy, "val")[0][0])


def test_mmap_damaged_copy_is_rebuilt(breast_copy):
    MedMNISTDataset(path=breast_copy, split="val", mmap=True)
    (copy,) = _copies(breast_copy.parent, "val")
    copy.write_bytes(copy.read_bytes()[:500])
    ds = MedMNISTDataset(path=breast_copy, split="val", mmap=True)
    np.testing.assert_array_equal(ds[3][0][..., 0], _direct(breast_copy, "val")[0][3])


def test_mmap_pickles_without_the_array(breast_copy):
    mm = MedMNISTDataset(path=breast_copy, split="train", mmap=True)
    _ = mm[0]
    blob = pickle.dumps(mm)
    assert len(blob) < 546 * 28 * 28  # the 546 images are not inside
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone[3][0], mm[3][0])


def test_mmap_auto_for_large_images(tmp_path):
    imgs = _retina_crops(3, 128)
    path = write_medmnist_npz(tmp_path / "fundus_128.npz", {"train": (imgs, [0, 1, 0])},
                              info={"task": "binary", "class_names": ["no", "yes"]})
    ds = MedMNISTDataset(path=path, split="train")
    assert ds.flag == "fundus" and ds.size == 128 and ds.describe()["mmap"]
    assert len(_copies(tmp_path, "train", stem="fundus_128")) == 1
    np.testing.assert_array_equal(ds[2][0], imgs[2])


def test_mmap_unwritable_dir_suggests_cache_dir(breast_copy, tmp_path, monkeypatch):
    import medssl.data.medmnist.npy_cache as mod

    real_access = os.access
    monkeypatch.setattr(mod.os, "access", lambda p, m: False if Path(p) == breast_copy.parent else real_access(p, m))
    with pytest.raises(DataError, match=r"breastmnist\.npz: .*is not writable; pass 'cache_dir'"):
        MedMNISTDataset(path=breast_copy, split="val", mmap=True)
    cache = tmp_path / "cache"
    cache.mkdir()
    ds = MedMNISTDataset(path=breast_copy, split="val", mmap=True, cache_dir=cache)
    assert len(_copies(cache, "val")) == 1 and len(ds) == 78


# -- custom and multilabel files ------------------------------------------------------------------
def test_multilabel_float_vectors_from_official_flag(tmp_path):
    imgs = _retina_crops(4, 28)[..., 1]  # grayscale, like ChestMNIST
    labels = np.zeros((4, 14), np.uint8)
    labels[0, [1, 5]] = 1
    labels[3, 13] = 1
    path = write_medmnist_npz(tmp_path / "chestmnist.npz", {"test": (imgs, labels)})
    ds = MedMNISTDataset(flag="chestmnist", root=tmp_path, split="test")
    assert ds.task == "multilabel" and ds.num_classes == 14 and ds.in_channels == 1
    img, lab = ds[0]
    assert img.shape == (28, 28, 1)
    assert lab.dtype == np.float32 and lab.shape == (14,) and np.flatnonzero(lab).tolist() == [1, 5]
    assert ds.labels().dtype == np.float32 and ds.labels().shape == (4, 14)
    assert path.name == "chestmnist.npz"


def test_sidecar_json_for_custom_flag(tmp_path):
    imgs = _retina_crops(5, 28)
    path = write_medmnist_npz(
        tmp_path / "fundusmnist.npz",
        {"train": (imgs[:3], np.array([0, 2, 1])), "val": (imgs[3:], np.array([[1], [0]]))},
        info={"task": "ordinal-regression", "class_names": {"0": "none", "1": "mild", "2": "severe"},
              "description": "three fundus crops"},
    )
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta == {"task": "ordinal", "class_names": ["none", "mild", "severe"], "description": "three fundus crops"}
    with np.load(path) as z:
        assert z["train_labels"].shape == (3, 1) and z["val_labels"].shape == (2, 1)
    ds = DATASETS.build({"name": "medmnist", "root": str(tmp_path), "flag": "fundusmnist", "split": "train"})
    assert (ds.task, ds.class_names, ds.description) == ("ordinal", ["none", "mild", "severe"], "three fundus crops")
    assert [ds[i][1] for i in range(3)] == [0, 2, 1]
    np.testing.assert_array_equal(ds[1][0], imgs[1])


def test_overrides_without_sidecar(tmp_path):
    path = write_medmnist_npz(tmp_path / "x.npz", {"train": (_retina_crops(2, 28), [1, 0])})
    ds = MedMNISTDataset(path=path, task="binary", class_names=["a", "b"])
    assert ds.task == "binary" and ds.labels().tolist() == [1, 0]
    with pytest.raises(DataError, match=r"x\.npz: 'x' is not an official MedMNIST flag and there is no sidecar x\.json"):
        MedMNISTDataset(path=path)


# -- offline by default ------------------------------------------------------------------------
def _forbid_network(monkeypatch):
    import medmnist.dataset
    import torchvision.datasets.utils as tvu

    def boom(*a, **k):
        raise AssertionError("medssl tried to download")

    monkeypatch.setattr(medmnist.dataset.MedMNIST, "download", boom)
    monkeypatch.setattr(tvu, "download_url", boom)
    monkeypatch.setattr(urllib.request, "urlopen", boom)


def test_missing_file_does_not_download(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    with pytest.raises(DataError) as err:
        MedMNISTDataset(flag="dermamnist", root=tmp_path, size=64)
    msg = str(err.value)
    assert "dermamnist_64.npz not found" in msg and str(tmp_path) in msg
    assert "zenodo.org/records/10519652" in msg and f"python -m medmnist download --size=64 --root={tmp_path}" in msg
    with pytest.raises(DataError, match=r"directory .*absent does not exist"):
        MedMNISTDataset(flag="dermamnist", root=tmp_path / "absent")


def test_there_is_no_download_option(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'download'"):
        DATASETS.build({"name": "medmnist", "flag": "breastmnist", "root": str(tmp_path), "download": True})


# -- bad inputs ---------------------------------------------------------------------------------
def _save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_truncated_and_non_zip_files(breast_copy, tmp_path):
    data = breast_copy.read_bytes()
    cut = tmp_path / "cut" / "breastmnist.npz"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut/breastmnist\.npz: not a readable \.npz file \(corrupt or truncated\?\)"):
        MedMNISTDataset(path=cut)
    text = tmp_path / "breastmnist.npz"
    text.write_text("not a zip")
    with pytest.raises(DataError, match=r"breastmnist\.npz: not a readable \.npz.*BadZipFile"):
        MedMNISTDataset(path=text)


def test_corrupted_member_bytes(breast_copy):
    data = bytearray(breast_copy.read_bytes())
    mid = len(data) // 3  # inside the compressed train images
    data[mid : mid + 64] = bytes(64)
    breast_copy.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"breastmnist\.npz: not a readable \.npz"):
        MedMNISTDataset(path=breast_copy, split="train")


INFO = {"task": "multiclass", "class_names": ["a", "b", "c"]}


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"train_images": np.zeros((3, 28, 28, 3), np.uint8), "train_labels": np.zeros((2, 1), np.uint8)},
         r"\[train_labels\]: 2 labels for 3 images"),
        ({"train_images": np.zeros((2, 28, 28, 3), np.uint16), "train_labels": np.zeros((2, 1), np.uint8)},
         r"\[train_images\]: expected dtype uint8, got uint16"),
        ({"train_images": np.zeros((2, 28, 28, 5), np.uint8), "train_labels": np.zeros((2, 1), np.uint8)},
         r"\[train_images\]: expected 1 or 3 channels"),
        ({"train_images": np.zeros((2, 28, 28, 3), np.uint8), "train_labels": np.array([[0], [3]])},
         r"\[train_labels\]: labels must be integers in \[0, 3\).*0\.\.3"),
        ({"train_images": np.zeros((2, 28, 28, 3), np.uint8), "train_labels": np.zeros((2, 2), np.uint8)},
         r"\[train_labels\]: single-label task 'multiclass' needs labels of shape"),
        ({"train_images": np.zeros((2, 28, 28, 3), np.uint8)},
         r"no key 'train_labels'.*splits none \(keys: train_images\)"),
    ],
)
def test_malformed_arrays(tmp_path, arrays, pattern):
    path = _save(tmp_path / "bad.npz", **arrays)
    path.with_suffix(".json").write_text(json.dumps(INFO))
    with pytest.raises(DataError, match=r"bad\.npz.*" + pattern):
        MedMNISTDataset(path=path, split="train")


def test_multilabel_values_must_be_binary(tmp_path):
    labels = np.zeros((2, 14), np.uint8)
    labels[1, 2] = 2
    path = _save(tmp_path / "chestmnist.npz", test_images=np.zeros((2, 28, 28), np.uint8), test_labels=labels)
    with pytest.raises(DataError, match=r"chestmnist\.npz \[test_labels\]: multilabel labels must be 0 or 1"):
        MedMNISTDataset(path=path, split="test")
    path = _save(tmp_path / "chestmnist.npz", test_images=np.zeros((2, 28, 28), np.uint8), test_labels=labels[:, :3])
    with pytest.raises(DataError, match=r"multilabel labels must have shape \(N, 14\), got \(2, 3\)"):
        MedMNISTDataset(path=path, split="test")


def test_official_channel_count_checked(tmp_path):
    path = _save(tmp_path / "bloodmnist.npz", val_images=np.zeros((2, 28, 28), np.uint8), val_labels=np.zeros((2, 1)))
    with pytest.raises(DataError, match=r"bloodmnist\.npz \[val_images\]: expected 3 channel\(s\)"):
        MedMNISTDataset(path=path, split="val")


def test_bad_sidecar(tmp_path):
    path = write_medmnist_npz(tmp_path / "c.npz", {"train": (np.zeros((1, 4, 4), np.uint8), [0])})
    side = tmp_path / "c.json"
    side.write_text("{not json")
    with pytest.raises(DataError, match=r"c\.json: cannot read the sidecar JSON"):
        MedMNISTDataset(path=path)
    side.write_text(json.dumps({"task": "regression", "class_names": ["a"]}))
    with pytest.raises(DataError, match=r"c\.json: unknown task 'regression'"):
        MedMNISTDataset(path=path)
    side.write_text(json.dumps({"task": "binary"}))
    with pytest.raises(DataError, match=r"c\.json: missing class_names"):
        MedMNISTDataset(path=path)


def test_verify_needs_an_official_md5(tmp_path):
    path = write_medmnist_npz(tmp_path / "c.npz", {"train": (np.zeros((1, 4, 4), np.uint8), [0])},
                              info={"task": "multiclass", "class_names": ["a"]})
    with pytest.raises(DataError, match=r"c\.npz: verify=true but there is no official md5 for flag 'c'"):
        MedMNISTDataset(path=path, verify=True)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"flag": "bloodmnist", "root": ".", "split": "training"}, r"split must be one of train, val, test"),
        ({"flag": "bloodmnist", "root": ".", "size": 32}, r"size must be one of \(28, 64, 128, 224\)"),
        ({"flag": "bloodmnist"}, r"give 'flag' and 'root'"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        MedMNISTDataset(**kwargs)


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown split 'valid'"):
        write_medmnist_npz(tmp_path / "a.npz", {"valid": (np.zeros((1, 4, 4), np.uint8), [0])})
    with pytest.raises(DataError, match=r"\[train\]: 2 labels for 1 images"):
        write_medmnist_npz(tmp_path / "a.npz", {"train": (np.zeros((1, 4, 4), np.uint8), [0, 1])})
    with pytest.raises(ConfigError, match=r"must end in \.npz"):
        write_medmnist_npz(tmp_path / "a.npy", {})
    assert not list(tmp_path.iterdir())


def test_mmap_reads_in_forked_workers_match(breast_copy):
    import torch

    ram = MedMNISTDataset(path=breast_copy, split="val", mmap=False)
    mm = MedMNISTDataset(path=breast_copy, split="val", mmap=True)
    _ = mm[0]  # the parent opens its reader before the fork; workers must open their own
    loader = torch.utils.data.DataLoader(mm, batch_size=16, num_workers=2, multiprocessing_context="fork")
    got = torch.cat([x for x, _ in loader])
    want = np.stack([ram[i][0] for i in range(len(ram))])
    np.testing.assert_array_equal(got.numpy(), want)
