"""Level choice from mpp and the tile grid (medssl/wsi/grid.py), on slide descriptions."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.errors import DataError
from medssl.wsi.grid import choose_level, plan_tiles
from medssl.wsi.slide import SlideInfo


def info(mpp=0.25, dims=((4000, 3000), (2000, 1500), (1000, 750)), downs=(1.0, 2.0, 4.0)) -> SlideInfo:
    return SlideInfo(path="s.svs", backend="test", level_dimensions=dims, level_downsamples=downs, mpp=mpp)


@pytest.mark.parametrize("want, level", [(0.25, 0), (0.26, 0), (0.5, 1), (0.52, 1), (0.7, 1), (1.0, 2), (4.0, 2)])
def test_choose_level_takes_the_coarsest_level_not_coarser_than_asked(want, level):
    assert choose_level(info(), want)[0] == level


def test_scanner_mpp_within_tolerance_reads_the_level_as_is():
    plan = plan_tiles(info(mpp=0.2527), 96, mpp=0.5)  # level 1 is 0.5054 um/px
    assert (plan.level, plan.read_size) == (1, 96)
    assert plan.footprint0 == pytest.approx(192)


def test_between_levels_the_tile_is_read_larger_and_downscaled():
    plan = plan_tiles(info(), 100, mpp=0.7)  # level 1 (0.5 um/px), 140 px of it per tile
    assert (plan.level, plan.read_size, plan.mpp) == (1, 140, 0.7)
    assert plan.footprint0 == pytest.approx(280)


def test_finer_than_level_zero_is_refused_naming_the_slide():
    with pytest.raises(DataError, match=r"s\.svs: no level at 0\.1 um/px.*finest level \(0\) is 0\.25"):
        plan_tiles(info(), 96, mpp=0.1)


def test_no_mpp_needs_level_or_slide_mpp():
    with pytest.raises(DataError, match=r"s\.svs: the slide has no microns-per-pixel.*--level N.*--slide-mpp"):
        plan_tiles(info(mpp=None), 96, mpp=0.5)
    assert plan_tiles(info(mpp=None), 96, mpp=0.5, slide_mpp=0.25).level == 1
    plan = plan_tiles(info(mpp=None), 96, level=2)
    assert (plan.level, plan.mpp, plan.footprint0) == (2, None, 384)


def test_missing_level_is_refused_listing_the_levels():
    with pytest.raises(DataError, match=r"s\.svs: no pyramid level 3: the slide has levels 0\.\.2 \(4000x3000"):
        plan_tiles(info(), 96, level=3)


def test_tile_larger_than_the_slide_is_refused():
    with pytest.raises(DataError, match=r"s\.svs: a 512 px tile at 4 um/px covers 8192 level-0 px but the slide is 4000 x 3000"):
        plan_tiles(info(), 512, mpp=4.0)


def test_grid_covers_whole_tiles_only_with_overlap():
    plan = plan_tiles(info(), 100, level=0, overlap=20)  # step 80 px
    corners = plan.grid(400, 250)
    xs, ys = sorted(set(corners[:, 0])), sorted(set(corners[:, 1]))
    assert xs == [0, 80, 160, 240] and ys == [0, 80]  # 240 + 100 <= 400; 160 + 100 > 250
    assert len(corners) == 8 and list(corners[1]) == [80, 0]  # row by row
    assert plan.grid(99, 99).shape == (0, 2)


@pytest.mark.parametrize("kw, msg", [({"overlap": 96}, "--overlap"), ({"overlap": -1}, "--overlap")])
def test_bad_overlap(kw, msg):
    with pytest.raises(DataError, match=msg):
        plan_tiles(info(), 96, level=0, **kw)


def test_exactly_one_of_mpp_and_level():
    with pytest.raises(DataError, match="exactly one of --mpp"):
        plan_tiles(info(), 96, mpp=0.5, level=1)


def test_grid_is_integer_level0_pixels():
    plan = plan_tiles(info(mpp=0.3), 96, mpp=0.5)  # 0.5 / 0.3: 160 level-0 px per tile
    c = plan.grid(1000, 1000)
    assert c.dtype == np.int64 and c[:, 0].max() + plan.footprint0 <= 1000
