"""scripts/bench_tiling.py: its pieces on the real slide, small enough for the suite."""

from __future__ import annotations

import json

import pytest

from conftest import shared_file
from tests.scripts.test_benchmarks_smoke import load_script

pytestmark = pytest.mark.shared_data


def test_copies_are_distinct_files_and_tiling_is_measured(tmp_path):
    bench = load_script("bench_tiling")
    src = shared_file("histology/cmu_small_region_HE.svs")
    slides = bench.make_copies(src, tmp_path / "s", 2)
    assert [p.name for p in slides] == ["slide000.svs", "slide001.svs"]
    assert slides[0].stat().st_ino != slides[1].stat().st_ino
    r = bench.run_tile(slides[:1], tmp_path / "tiles", workers=1)
    manifest = json.loads((tmp_path / "tiles" / "manifest.json").read_text())
    assert r["tiles"] == manifest["totals"]["tiles"] == 230 and r["slides"] == 1
    assert r["wall"] > r["slide_s"] > 0 and r["rss_mib"] > 50


def test_reading_table_compares_the_same_tiles(tmp_path):
    from medssl.wsi.manifest import TilingParams
    from medssl.wsi.tiler import tile_slides

    bench = load_script("bench_tiling")
    src = shared_file("histology/cmu_small_region_HE.svs")
    tile_slides([src], tmp_path / "tiles", TilingParams(max_tiles_per_slide=64))
    rows = bench.reading(tmp_path / "tiles", tmp_path, reps=1, workers_list=[0])
    assert len(rows) == 1 and rows[0][0] == 0 and rows[0][3].endswith("x")
    from medssl.data.pcam import PCAM
    from medssl.data.wsi_tiles import WSITiles

    wsi, pcam = WSITiles(tmp_path / "tiles"), PCAM(tmp_path / "pcam", "train")
    assert len(wsi) == len(pcam) == 64 and (wsi[17][0] == pcam[17][0]).all()
