"""The tile shard format (medssl/wsi/shards.py): round trip, atomic writes, resume checks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medssl.errors import DataError
from medssl.wsi.shards import FORMAT, batched, meta_dtype, read_meta, shard_matches, shard_name, write_shard


def _meta(n: int, slide: str = "s1") -> np.ndarray:
    m = np.zeros(n, dtype=meta_dtype(len(slide)))
    m["slide"], m["level"], m["x"], m["y"], m["mpp"], m["tissue"] = slide.encode(), 1, np.arange(n) * 96, 7, 0.5, 0.75
    return m


def _tiles(n: int, t: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, t, t, 3), dtype=np.uint8)


def test_round_trip(tmp_path):
    tiles, meta = _tiles(5), _meta(5)
    path = write_shard(tmp_path / "a.h5", "s1", 16, meta, lambda i: tiles[i])
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["x"][()], tiles)
        assert f["x"].dtype == np.uint8 and f["x"].compression is None and f.attrs["format"] == FORMAT
    info = read_meta(path)
    assert (info["n"], info["tile"], info["slide"]) == (5, 16, "s1")
    np.testing.assert_array_equal(info["meta"], meta)
    assert shard_matches(path, meta) and not shard_matches(path, _meta(4))
    assert not shard_matches(tmp_path / "missing.h5", meta)


def test_a_failure_mid_shard_leaves_no_file(tmp_path):
    def read(i: int) -> np.ndarray:
        if i == 3:
            raise DataError("slide went away")
        return np.zeros((16, 16, 3), np.uint8)

    with pytest.raises(DataError, match="slide went away"):
        write_shard(tmp_path / "a.h5", "s1", 16, _meta(5), read)
    assert list(tmp_path.iterdir()) == []


def test_wrong_tile_shape_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"tile 0 has shape \(8, 8, 3\)"):
        write_shard(tmp_path / "a.h5", "s1", 16, _meta(1), lambda i: np.zeros((8, 8, 3), np.uint8))


def test_foreign_or_damaged_files_are_named(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(DataError, match="other.h5: not a medssl tile shard"):
        read_meta(other)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="junk.h5: cannot read the tile shard"):
        read_meta(junk)
    assert not shard_matches(junk, _meta(1))


def test_shard_names_are_safe_and_distinct():
    a, b = shard_name("case 1/a", 0), shard_name("case_1_a", 0)
    assert a != b and "/" not in a and " " not in a and a.endswith("-00000.h5")


def test_batched():
    assert [list(r) for r in batched(5, 2)] == [[0, 1], [2, 3], [4]]
    assert list(batched(0, 2)) == []


def test_a_shard_whose_tiles_live_in_another_file_is_refused(tmp_path):
    """A shard rewritten so that 'x' is a virtual dataset over another file (gone now)
    would read as zeros: read_meta refuses it (medssl.hdf5.local_dataset)."""
    tiles, meta = _tiles(3), _meta(3)
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["x"] = tiles
    layout = h5py.VirtualLayout(shape=tiles.shape, dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(tmp_path / "src.h5"), "x", shape=tiles.shape)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_virtual_dataset("x", layout, fillvalue=0)
        f.create_dataset("meta", data=meta)
        f.attrs.update({"format": FORMAT, "slide": "s1", "tile": 16})
    (tmp_path / "src.h5").unlink()
    with pytest.raises(DataError, match=r"a\.h5: dataset 'x' is an HDF5 virtual dataset mapped from .*src\.h5"):
        read_meta(tmp_path / "a.h5")
