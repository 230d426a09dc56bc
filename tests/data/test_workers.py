"""PCAM and STL-10 through a DataLoader: 0 and 2 workers, fork and spawn, same pixels as a direct read."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medssl.data.pcam import PCAM, split_files, write_pcam_split
from medssl.data.stl10 import STL10, write_stl10_split
from conftest import shared_file

N = 6


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("workers")
    with np.load(shared_file("histology/he_patches_96x96_unlabeled.npz"), allow_pickle=False) as z:
        he = z["images"][::40][:N]
    with np.load(shared_file("stl10/stl10_real_samples.npz"), allow_pickle=False) as z:
        stl = z["seg_originals_images"][:N]
    write_pcam_split(base / "pcam", "test", he, np.arange(N) % 2)
    write_stl10_split(base / "stl10", "train", stl, np.arange(N) % 10)
    return {"pcam": base / "pcam", "stl10": base / "stl10"}


def _direct(fmt: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    if fmt == "pcam":
        files = split_files(root, "test")
        with h5py.File(files["x"], "r") as fx, h5py.File(files["y"], "r") as fy:
            return fx["x"][()], fy["y"][()].reshape(-1).astype(np.int64)
    raw = np.fromfile(root / "stl10_binary" / "train_X.bin", dtype=np.uint8)
    labels = np.fromfile(root / "stl10_binary" / "train_y.bin", dtype=np.uint8).astype(np.int64) - 1
    return raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1), labels


def _make(fmt: str, root: Path):
    return PCAM(root, "test") if fmt == "pcam" else STL10(root, "train")


def _load_all(ds, workers: int, context: str | None) -> tuple[np.ndarray, np.ndarray]:
    loader = DataLoader(
        ds, batch_size=2, shuffle=False, num_workers=workers,
        multiprocessing_context=mp.get_context(context) if context else None,
    )
    images, labels = zip(*[(x, y) for x, y in loader])
    return torch.cat(images).numpy(), torch.cat(labels).numpy()


@pytest.mark.parametrize(
    "fmt, workers, context",
    [
        ("pcam", 0, None),
        ("pcam", 2, "fork"),
        pytest.param("pcam", 2, "spawn", marks=pytest.mark.slow),
        ("stl10", 0, None),
        ("stl10", 2, "fork"),
        pytest.param("stl10", 2, "spawn", marks=pytest.mark.slow),
    ],
)
def test_loader_matches_direct_read(roots, fmt, workers, context):
    if context and context not in mp.get_all_start_methods():
        pytest.skip(f"{context} start method not available on this platform")
    ds = _make(fmt, roots[fmt])
    images, labels = _load_all(ds, workers, context)
    ref_images, ref_labels = _direct(fmt, roots[fmt])
    assert images.dtype == np.uint8 and images.shape == (N, 96, 96, 3)
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_pcam_handle_opened_in_parent_before_fork(roots):
    """A parent that already read items (so holds a handle) still gives correct pixels in forked workers."""
    ds = PCAM(roots["pcam"], "test")
    first = ds[0][0]
    parent_handle = ds._h5
    images, _ = _load_all(ds, 2, "fork")
    np.testing.assert_array_equal(images, _direct("pcam", roots["pcam"])[0])
    assert ds._h5 is parent_handle  # the parent's handle was left alone
    np.testing.assert_array_equal(ds[0][0], first)
