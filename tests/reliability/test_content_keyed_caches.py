"""Caches are keyed by content, never by timestamps.

A file replaced by another one that carries an *older* mtime (``cp -p``, ``tar``,
``rsync -t``) or edited in place with its mtime restored must never be answered from a
cache built from the old bytes. Covered here for every cache medssl keeps: the MedMNIST
memory-map copies and the transfer feature cache, for every dataset format.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict

import h5py
import numpy as np
import pytest

from medssl.data.open import open_dataset
from medssl.eval.cache import fingerprint
from medssl.provenance import data_provenance
from medssl.eval.config import load_transfer_config
from medssl.eval.transfer import run_transfer

from tests.eval.transfer_helpers import export_tiny, quick_cfg


def _edit_in_place(path: Path, offset: int) -> None:
    """Flip one byte at ``offset`` keeping the size, then put the old mtime back."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


SPECS: Dict[str, Callable[[Path], Dict[str, object]]] = {
    "pcam": lambda root: {"name": "pcam", "root": str(root / "pcam"), "split": "train"},
    "stl10": lambda root: {"name": "stl10", "root": str(root / "stl10"), "split": "train"},
    "medmnist": lambda root: {"name": "medmnist", "path": str(root / "medmnist" / "ihcstain.npz"), "split": "train"},
    "folder": lambda root: {"name": "folder", "root": str(root / "folder")},
}


@pytest.mark.parametrize("fmt", sorted(SPECS))
def test_feature_cache_key_changes_with_any_byte_of_any_source_file(fmt: str, sample_dir: Path,
                                                                   tmp_path: Path) -> None:
    """The transfer feature-cache key covers every file the dataset reads, all of each
    file (the middle byte too), whatever its size and mtime."""
    root = tmp_path / "data"
    shutil.copytree(sample_dir, root)
    spec = SPECS[fmt](root)
    ds = open_dataset(spec)
    files = ds.source_files()
    assert files and all(p.is_file() for p in files)
    if fmt == "folder":
        assert len(files) > 64  # more files than a report lists one by one
    key = fingerprint("enc", data_provenance(spec, ds.describe(), files), "train")
    for p in (files[-1], max(files, key=lambda q: q.stat().st_size)):  # the last file; the largest, mid-way
        _edit_in_place(p, p.stat().st_size // 2)
        new = fingerprint("enc", data_provenance(spec, ds.describe(), files), "train")
        assert new != key, f"{p.name} changed mid-file but the cache key did not"
        key = new


def test_transfer_recomputes_features_after_a_tile_changed_in_place(sample_dir: Path, tmp_path: Path) -> None:
    """A PCAM tile in the middle of a 2.9 MB x.h5 rewritten, size and mtime unchanged:
    the features are recomputed (a head/tail hash would have reused the old ones)."""
    root = tmp_path / "pcam"
    shutil.copytree(sample_dir / "pcam", root)
    enc = export_tiny(tmp_path / "enc")
    cfg = quick_cfg(enc, str(root), tmp_path / "out", protocol="knn", seeds=1)
    assert run_transfer(load_transfer_config(data=cfg)).cache_hits == {"train:train": False, "test:test": False}
    x = root / "camelyonpatch_level_2_split_train_x.h5"
    st = x.stat()
    with h5py.File(x, "r+") as fh:
        n = fh["x"].shape[0]
        fh["x"][n // 2] = 255 - fh["x"][n // 2]
    os.utime(x, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert x.stat().st_size == st.st_size
    again = run_transfer(load_transfer_config(data=cfg))
    assert again.cache_hits == {"train:train": False, "test:test": True}
    third = run_transfer(load_transfer_config(data=cfg))
    assert third.cache_hits == {"train:train": True, "test:test": True}


def test_medmnist_copy_is_not_reused_for_an_older_replacement_through_the_cli(sample_dir: Path,
                                                                              tmp_path: Path) -> None:
    """``cp -p`` of another npz over the original: ``medssl data stats`` measures the new
    pixels, not those of the memory-map copy made from the old file."""
    import json

    from medssl.data.medmnist import write_medmnist_npz
    from tests.reliability.harness import run_cli, write_yaml

    with np.load(sample_dir / "medmnist" / "ihcstain.npz") as z:
        images, labels = z["train_images"], z["train_labels"]
    info = {"task": "multiclass", "class_names": ["background", "dab_negative", "dab_positive"]}
    data = write_medmnist_npz(tmp_path / "data" / "tiles.npz", {"train": (images, labels)}, info=info)
    other = write_medmnist_npz(tmp_path / "elsewhere" / "tiles.npz", {"train": (255 - images, labels)}, info=info)
    cfg = write_yaml(tmp_path / "d.yaml", {"data": {"name": "medmnist", "path": str(data), "mmap": True}})

    def mean() -> float:
        rc, out, err = run_cli(["data", "stats", str(cfg), "--max-images", "0", "--json"])
        assert rc == 0, err
        return float(np.mean(json.loads(out)["mean"]))

    before = mean()
    stamp = data.stat().st_mtime - 3600
    os.utime(other, (stamp, stamp))
    shutil.copy2(other, data)  # cp -p: new bytes, an hour older than the copy
    assert abs(mean() - (1.0 - before)) < 1e-3
