"""Opening slides with OpenSlide / tiffslide (medssl/wsi/slide.py) on the real SVS and a
pyramidal TIFF built from it; damaged files give one error naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.errors import DataError
from medssl.wsi.slide import _to_rgb, open_slide
from tests.wsi.conftest import CROP

pytestmark = pytest.mark.shared_data


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_real_svs_metadata_and_pixels(svs, backend):
    with open_slide(svs, backends=(backend,)) as slide:
        info = slide.info
        assert info.backend == backend and info.level_count == 1
        assert info.level_dimensions[0] == (2220, 2967) and info.mpp == pytest.approx(0.499)
        region = slide.read(1000, 1500, 0, 64, 48)
    assert region.shape == (48, 64, 3) and region.dtype == np.uint8
    assert 50 < region.mean() < 250  # H&E pixels, not an empty/transparent read


def test_backends_read_the_same_pixels(svs):
    with open_slide(svs, backends=("openslide",)) as a, open_slide(svs, backends=("tiffslide",)) as b:
        ra, rb = a.read(900, 1700, 0, 96, 96), b.read(900, 1700, 0, 96, 96)
    # both decode the same JPEG tiles; decoders may differ by a grey level
    assert np.abs(ra.astype(int) - rb.astype(int)).mean() < 2


def test_pyramid_levels_and_mpp(pyramid, svs_crop):
    with open_slide(pyramid) as slide:
        assert slide.info.level_dimensions == ((1024, 1024), (512, 512), (256, 256))
        assert slide.info.level_downsamples == pytest.approx((1, 2, 4))
        assert slide.info.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(slide.read(100, 200, 0, 32, 16), svs_crop[200:216, 100:132])
        np.testing.assert_array_equal(slide.read(100, 200, 1, 8, 8), svs_crop[200:216:2, 100:116:2])
    assert CROP[2] == 1024


def test_stripped_tiff_falls_back_to_tiffslide(tmp_path, svs_crop):
    import tifffile

    path = tmp_path / "stripped.tif"
    tifffile.imwrite(path, svs_crop[:256, :320], photometric="rgb")  # not tiled: OpenSlide refuses it
    with open_slide(path) as slide:
        assert slide.backend == "tiffslide" and slide.info.level_dimensions == ((320, 256),)
        np.testing.assert_array_equal(slide.read(10, 20, 0, 30, 40), svs_crop[20:60, 10:40])


def test_pyramid_without_resolution_has_no_mpp(pyramid_no_mpp):
    with open_slide(pyramid_no_mpp) as slide:
        assert slide.info.mpp is None


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "text"])
def test_damaged_files_raise_one_line_naming_the_file(bad_slides, kind):
    path = bad_slides[kind]
    with pytest.raises(DataError) as err:
        open_slide(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not a readable whole-slide image") and "\n" not in msg
    assert "openslide" in msg and "tiffslide" in msg


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.svs: no such slide file"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(DataError, match="is not a file"):
        open_slide(tmp_path)


def test_transparent_pixels_become_white_background():
    rgba = np.array([[[200, 10, 10, 255], [0, 0, 0, 0], [100, 100, 100, 128]]], dtype=np.uint8)
    assert _to_rgb(rgba).tolist() == [[[200, 10, 10], [255, 255, 255], [177, 177, 177]]]
