"""Tiling slides end to end (medssl/wsi/tiler.py): the real SVS, a pyramid for level/mpp,
damaged slides among good ones, resume after a crash, and refusals."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from medssl.errors import DataError
from medssl.provenance import sha256_file
from medssl.wsi.manifest import TilingParams, load_manifest
from medssl.wsi.slide import open_slide
from medssl.wsi.tiler import slide_ids, tile_slide, tile_slides

pytestmark = pytest.mark.shared_data
FEW = TilingParams(tile=96, mpp=0.5, max_tiles_per_slide=12, shard_size=5)


def test_real_svs_end_to_end(svs, tmp_path):
    lines = []
    m = tile_slides([svs], tmp_path / "out", FEW, progress=lines.append)
    rec = m["slides"]["cmu_small_region_HE"]
    assert rec["status"] == "done" and rec["level"] == 0 and rec["backend"] == "openslide"
    # 0.499 um/px is within tolerance of 0.5: 96 px read as is; 23 x 30 whole tiles
    assert rec["grid_tiles"] == 23 * 30 and rec["kept"] == 12 and rec["kept"] + rec["rejected"] == 690
    assert [s["tiles"] for s in rec["shards"]] == [5, 5, 2]
    for s in rec["shards"]:
        assert s["sha256"] == sha256_file(tmp_path / "out" / s["file"])
    assert m["totals"] == {"slides": 1, "done": 1, "failed": 0, "tiles": 12}
    assert load_manifest(tmp_path / "out")["slides"]["cmu_small_region_HE"]["kept"] == 12
    assert len(lines) == 1 and "cmu_small_region_HE: 12 tiles kept, 678 rejected, 3 shard(s)" in lines[0]
    with h5py.File(tmp_path / "out" / rec["shards"][0]["file"]) as f:
        x, meta = f["x"][()], f["meta"][()]
    assert x.shape == (5, 96, 96, 3) and (meta["tissue"] >= 0.5).all() and (meta["mpp"] == np.float32(0.5)).all()
    with open_slide(svs) as slide:  # the stored tile is the slide region at its meta corner
        np.testing.assert_array_equal(x[2], slide.read(int(meta["x"][2]), int(meta["y"][2]), 0, 96, 96))
    thumb = Image.open(tmp_path / "out" / rec["thumbnail"])
    assert thumb.format == "PNG" and max(thumb.size) == 1024


def test_tissue_threshold_keeps_tissue_tiles_only(svs, tmp_path):
    m = tile_slides([svs], tmp_path / "out", TilingParams(tile=192, mpp=1.0, shard_size=1000))
    rec = m["slides"]["cmu_small_region_HE"]
    with h5py.File(tmp_path / "out" / rec["shards"][0]["file"]) as f:
        x = f["x"][()]
    # kept tiles are stained: far more saturated than the glass around the section
    sat = (x.max(-1).astype(int) - x.min(-1)).mean(axis=(1, 2))
    assert rec["kept"] == len(x) > 10 and rec["rejected"] > rec["kept"] and sat.min() > 30
    none = tile_slides([svs], tmp_path / "all", TilingParams(tile=192, mpp=1.0, tissue="none"))
    assert none["slides"]["cmu_small_region_HE"]["kept"] == rec["grid_tiles"]


@pytest.mark.parametrize("mpp, level, read", [(0.5, 1, 96), (1.0, 2, 96), (0.7, 1, 134)])
def test_pyramid_level_follows_mpp(pyramid, tmp_path, mpp, level, read):
    m = tile_slides([pyramid], tmp_path / "o", TilingParams(tile=96, mpp=mpp, max_tiles_per_slide=3))
    rec = m["slides"]["pyramid"]
    assert (rec["level"], rec["mpp"], rec["slide_mpp"]) == (level, mpp, pytest.approx(0.25))
    assert rec["grid_tiles"] == (1024 // round(96 * mpp / 0.25)) ** 2


def test_pyramid_tile_pixels_at_level_one(pyramid, svs_crop, tmp_path):
    m = tile_slides([pyramid], tmp_path / "o", TilingParams(tile=96, mpp=None, level=1, max_tiles_per_slide=2))
    with h5py.File(tmp_path / "o" / m["slides"]["pyramid"]["shards"][0]["file"]) as f:
        tile, row = f["x"][0], f["meta"][0]
    x, y = int(row["x"]), int(row["y"])
    np.testing.assert_array_equal(tile, svs_crop[y:y + 192:2, x:x + 192:2])
    assert row["level"] == 1 and row["mpp"] == pytest.approx(0.5)


def test_slide_without_mpp_fails_alone_and_says_what_to_do(pyramid, pyramid_no_mpp, tmp_path):
    m = tile_slides([pyramid_no_mpp, pyramid], tmp_path / "o", TilingParams(mpp=0.5, max_tiles_per_slide=2))
    assert m["slides"]["pyramid"]["status"] == "done"
    bad = m["slides"]["nompp"]
    assert bad["status"] == "failed" and bad["error"].startswith(f"{pyramid_no_mpp}: the slide has no microns-per-pixel")
    ok = tile_slides([pyramid_no_mpp], tmp_path / "p", TilingParams(mpp=0.5, slide_mpp=0.25, max_tiles_per_slide=2))
    assert ok["slides"]["nompp"]["level"] == 1


def test_damaged_slides_fail_others_are_tiled(svs, bad_slides, tmp_path):
    slides = [bad_slides["corrupt"], svs, bad_slides["truncated"]]
    m = tile_slides(slides, tmp_path / "o", FEW, workers=1)
    assert m["slides"]["cmu_small_region_HE"]["status"] == "done"
    for kind in ("corrupt", "truncated"):
        rec = m["slides"][kind]
        assert rec["status"] == "failed" and rec["error"].startswith(f"{bad_slides[kind]}: not a readable")
        assert "\n" not in rec["error"] and rec["shards"] == []
    assert m["totals"] == {"slides": 3, "done": 1, "failed": 2, "tiles": 12}


def test_process_pool_gives_the_same_shards(svs, pyramid, tmp_path):
    one = tile_slides([svs, pyramid], tmp_path / "one", FEW, workers=1)
    two = tile_slides([svs, pyramid], tmp_path / "two", FEW, workers=2)
    for sid in ("cmu_small_region_HE", "pyramid"):
        assert [s["sha256"] for s in one["slides"][sid]["shards"]] == [s["sha256"] for s in two["slides"][sid]["shards"]]


def test_resume_after_a_crash_keeps_finished_shards(svs, pyramid, tmp_path):
    out = tmp_path / "o"
    m = tile_slides([svs, pyramid], out, FEW)
    shards = [out / s["file"] for s in m["slides"]["cmu_small_region_HE"]["shards"]]
    # simulate a crash while writing the SVS's last shard: manifest still says pending
    doc = json.loads((out / "manifest.json").read_text())
    doc["slides"]["cmu_small_region_HE"] = {"path": str(svs), "status": "pending", "error": None, "shards": []}
    (out / "manifest.json").write_text(json.dumps(doc))
    shards[-1].unlink()
    kept_inode = shards[0].stat().st_ino
    pyr_inode = (out / m["slides"]["pyramid"]["shards"][0]["file"]).stat().st_ino
    lines = []
    again = tile_slides([svs, pyramid], out, FEW, resume=True, progress=lines.append)
    assert again["slides"]["cmu_small_region_HE"]["shards"] == m["slides"]["cmu_small_region_HE"]["shards"]
    assert shards[0].stat().st_ino == kept_inode and shards[-1].is_file()  # only the lost shard rewritten
    assert (out / m["slides"]["pyramid"]["shards"][0]["file"]).stat().st_ino == pyr_inode
    assert lines[0] == "resuming: 1 of 2 slide(s) already done" and len(lines) == 2


def test_resume_retries_failed_slides_and_adds_new_ones(svs, pyramid, bad_slides, tmp_path):
    out = tmp_path / "o"
    broken = tmp_path / "later.svs"
    shutil.copy(bad_slides["corrupt"], broken)
    tile_slides([svs, broken], out, FEW)
    shutil.copy(svs, broken)  # the user fixes the file
    m = tile_slides([svs, broken, pyramid], out, FEW, resume=True)
    assert {k: v["status"] for k, v in m["slides"].items()} == {"cmu_small_region_HE": "done", "later": "done",
                                                                 "pyramid": "done"}


def test_refusals_change_nothing(svs, tmp_path):
    out = tmp_path / "o"
    tile_slides([svs], out, FEW)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(DataError, match=r"already holds a tiling \(manifest.json\); pass --resume"):
        tile_slides([svs], out, FEW)
    with pytest.raises(DataError, match=r"--resume with different settings \(tile: 96 there vs 128 now\)"):
        tile_slides([svs], out, TilingParams(tile=128, mpp=0.5, max_tiles_per_slide=12, shard_size=5), resume=True)
    with pytest.raises(DataError, match="given twice on the command line"):
        tile_slides([svs, svs], tmp_path / "x", FEW)
    link = tmp_path / "link.svs"
    link.symlink_to(svs)
    with pytest.raises(DataError, match=f"link.svs: slide given twice on the command line \\(the same file as {svs}\\)"):
        tile_slides([svs, link], tmp_path / "x", FEW)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert not (tmp_path / "x").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty and holds no tiling manifest"):
        tile_slides([svs], other, FEW)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_slide_ids_must_be_unique(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"b/s1\.svs: same slide id 's1' as .*a/s1\.tif"):
        slide_ids([tmp_path / "a" / "s1.tif", tmp_path / "b" / "s1.svs"])
    assert list(slide_ids([tmp_path / "x.ome.tiff"])) == ["x"]


def test_max_tiles_is_a_seeded_subset(svs, tmp_path):
    a = tile_slide(svs, "s", tmp_path / "a", TilingParams(max_tiles_per_slide=5, shard_size=100))
    b = tile_slide(svs, "s", tmp_path / "b", TilingParams(max_tiles_per_slide=5, shard_size=100, seed=1))
    assert a["kept"] == b["kept"] == 5 and a["shards"][0]["sha256"] != b["shards"][0]["sha256"]
