"""Slides for the whole-slide tests: the real Aperio SVS of ../shared/data, a small
three-level pyramidal TIFF cut from it, and damaged copies (built once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_file

SVS = "histology/cmu_small_region_HE.svs"
# A tissue-rich 1024 x 1024 region of the SVS (level-0 px), the pyramid's level 0.
CROP = (700, 1400, 1024)
PYRAMID_MPP = 0.25  # what the test pyramid says its level 0 is (levels: 0.25, 0.5, 1.0 um/px)


def svs_path() -> Path:
    return shared_file(SVS)


def write_pyramid(path: Path, level0: np.ndarray, mpp: float | None, levels: int = 3) -> Path:
    """A tiled pyramidal TIFF, each level half the previous, resolution tags in cm when
    ``mpp`` is given (how OpenSlide's generic-TIFF reader and tiffslide find the mpp)."""
    import tifffile

    with tifffile.TiffWriter(path) as tw:
        for i in range(levels):
            img = level0[:: 2**i, :: 2**i]
            extra = {}
            if mpp is not None:
                res = 1e4 / (mpp * 2**i)
                extra = {"resolution": (res, res), "resolutionunit": "CENTIMETER"}
            tw.write(np.ascontiguousarray(img), tile=(128, 128), photometric="rgb",
                     subfiletype=0 if i == 0 else 1, **extra)
    return path


@pytest.fixture(scope="session")
def svs() -> Path:
    return svs_path()


@pytest.fixture(scope="session")
def svs_crop() -> np.ndarray:
    """The pyramid's level 0: (1024, 1024, 3) uint8 read from the SVS."""
    from medssl.wsi.slide import open_slide

    x, y, side = CROP
    with open_slide(svs_path()) as slide:
        return slide.read(x, y, 0, side, side)


@pytest.fixture(scope="session")
def pyramid(tmp_path_factory: pytest.TempPathFactory, svs_crop: np.ndarray) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("pyramid") / "pyramid.tif", svs_crop, PYRAMID_MPP)


@pytest.fixture(scope="session")
def pyramid_no_mpp(tmp_path_factory: pytest.TempPathFactory, svs_crop: np.ndarray) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("pyramid") / "nompp.tif", svs_crop, None)


@pytest.fixture(scope="session")
def bad_slides(tmp_path_factory: pytest.TempPathFactory, svs: Path) -> dict:
    """``{"corrupt": random bytes named .svs, "truncated": the first 40% of the real SVS,
    "text": a text file named .tif}``."""
    d = tmp_path_factory.mktemp("bad")
    corrupt = d / "corrupt.svs"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    data = svs.read_bytes()
    truncated = d / "truncated.svs"
    truncated.write_bytes(data[: int(len(data) * 0.4)])
    text = d / "notes.tif"
    text.write_text("not a slide\n")
    return {"corrupt": corrupt, "truncated": truncated, "text": text}


COHORT_SLIDES = ("a", "b", "c", "d", "e")


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory, pyramid: Path) -> Path:
    """A finished tiling of five slides (copies of the test pyramid named a..e): 0.5 um/px,
    64 px tiles, every tile kept (``--tissue none``: 64 per slide), shards of 24 tiles."""
    from medssl.wsi.manifest import TilingParams
    from medssl.wsi.tiler import tile_slides

    d = tmp_path_factory.mktemp("cohort")
    slides = []
    for name in COHORT_SLIDES:
        p = d / f"{name}.tif"
        shutil.copyfile(pyramid, p)
        slides.append(p)
    out = d / "tiles"
    tile_slides(slides, out, TilingParams(tile=64, mpp=0.5, tissue="none", shard_size=24))
    return out
