"""medssl.hdf5.local_dataset: data stored elsewhere (external link, virtual dataset,
external raw storage) is refused whether or not its source is still there."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import h5py
import numpy as np
import pytest

from medssl.errors import DataError
from medssl.hdf5 import local_dataset

TILES = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)


def _external_link(path: Path, src: Path) -> None:
    with h5py.File(src, "w") as f:
        f["x"] = TILES
    with h5py.File(path, "w") as f:
        f["x"] = h5py.ExternalLink(str(src), "/x")


def _virtual(path: Path, src: Path) -> None:
    with h5py.File(src, "w") as f:
        f["x"] = TILES
    layout = h5py.VirtualLayout(shape=TILES.shape, dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(src), "x", shape=TILES.shape)
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("x", layout, fillvalue=0)


def _external_storage(path: Path, src: Path) -> None:
    TILES.tofile(src)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=TILES.shape, dtype=np.uint8, external=[(str(src), 0, TILES.nbytes)])


FORMS: Dict[str, Callable[[Path, Path], None]] = {
    "external link": _external_link, "virtual dataset": _virtual, "external storage": _external_storage}
MESSAGES = {"external link": r"external link to .*src", "virtual dataset": r"virtual dataset mapped from .*src",
            "external storage": r"keeps its bytes in external file\(s\) .*src"}


@pytest.mark.parametrize("source_gone", [False, True], ids=["source-present", "source-gone"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_data_stored_in_another_file_is_refused(tmp_path: Path, form: str, source_gone: bool) -> None:
    path, src = tmp_path / "x.h5", tmp_path / "src.bin"
    FORMS[form](path, src)
    if source_gone:
        src.unlink()
    with h5py.File(path, "r") as fh, pytest.raises(DataError, match=rf"x\.h5: dataset 'x' .*{MESSAGES[form]}"):
        local_dataset(fh, "x", path)


def test_a_link_to_a_group_in_another_file_is_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f.create_group("g")["x"] = TILES
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["g"] = h5py.ExternalLink(str(tmp_path / "src.h5"), "/g")
        f["x"] = h5py.SoftLink("/g/x")
    with h5py.File(tmp_path / "x.h5", "r") as fh, pytest.raises(DataError, match=r"resolves into another file"):
        local_dataset(fh, "x", tmp_path / "x.h5")


def test_local_data_passes_and_absent_keys_are_left_to_the_caller(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = TILES
        f.create_group("grp")
        f["alias"] = h5py.SoftLink("/x")  # a link inside the same file is fine
        layout = h5py.VirtualLayout(shape=TILES.shape, dtype=np.uint8)
        layout[:] = h5py.VirtualSource(".", "x", shape=TILES.shape)  # a view of this file's own data
        f.create_virtual_dataset("view", layout)
    with h5py.File(tmp_path / "x.h5", "r") as fh:
        for key in ("x", "alias", "view"):
            np.testing.assert_array_equal(local_dataset(fh, key, tmp_path / "x.h5")[()], TILES)
        assert local_dataset(fh, "missing", tmp_path / "x.h5") is None
        assert local_dataset(fh, "grp", tmp_path / "x.h5") is None
