"""Which pyramid level to read and where the tiles lie.

A request is a tile size ``T`` (output pixels) and either a resolution in microns per
pixel (``mpp``) or a pyramid level. For an ``mpp``, the level read is the coarsest one
that is not coarser than asked (within :data:`MPP_TOLERANCE`), so tiles are only ever
downscaled, never upscaled; a level within the tolerance is read as is. Tile corners are
kept in level-0 pixels, the coordinate system every slide library addresses regions in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from medssl.errors import DataError
from medssl.wsi.slide import SlideInfo

# A level whose resolution is within 10% of the request is read without resampling:
# scanners report e.g. 0.499 or 0.2527 um/px for nominal 0.5 / 0.25.
MPP_TOLERANCE = 0.10


@dataclass(frozen=True)
class TilePlan:
    """How to cut one slide: read ``read_size`` px squares of ``level`` every ``step0``
    level-0 px and resize them to ``tile`` px; ``mpp`` is the output resolution (None when
    the slide has no mpp and a level was chosen directly)."""

    level: int
    tile: int
    read_size: int  # pixels of `level` per tile side
    footprint0: float  # level-0 pixels per tile side
    step0: float  # level-0 pixels between tile corners
    mpp: Optional[float]

    def grid(self, width0: int, height0: int) -> np.ndarray:
        """Top-left corners (N, 2) int64 ``(x, y)`` in level-0 pixels of every whole tile
        inside a ``width0`` x ``height0`` slide, row by row."""
        def starts(extent: int) -> np.ndarray:
            if self.footprint0 > extent:
                return np.zeros(0, dtype=np.int64)
            n = int(math.floor((extent - self.footprint0) / self.step0 + 1e-9)) + 1
            return np.floor(np.arange(n) * self.step0).astype(np.int64)

        xs, ys = starts(width0), starts(height0)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1)


def choose_level(info: SlideInfo, mpp: float, slide_mpp: Optional[float] = None) -> Tuple[int, float]:
    """``(level, level_mpp)`` for output resolution ``mpp``; ``slide_mpp`` overrides the
    slide's level-0 mpp. Raises DataError when the slide has no mpp or is too coarse."""
    base = slide_mpp if slide_mpp is not None else info.mpp
    if base is None:
        raise DataError(
            f"{info.path}: the slide has no microns-per-pixel in its metadata, so --mpp {mpp:g} cannot be "
            "honoured; pass --level N to pick a pyramid level, or --slide-mpp M to state its level-0 resolution"
        )
    level_mpps = [base * d for d in info.level_downsamples]
    if mpp < level_mpps[0] * (1 - MPP_TOLERANCE):
        raise DataError(
            f"{info.path}: no level at {mpp:g} um/px: the finest level (0) is {level_mpps[0]:.4g} um/px "
            f"and tiles are never upscaled; ask for --mpp {level_mpps[0]:.3g} or coarser"
        )
    usable = [i for i, m in enumerate(level_mpps) if m <= mpp * (1 + MPP_TOLERANCE)]
    level = max(usable, key=lambda i: level_mpps[i])
    return level, level_mpps[level]


def plan_tiles(info: SlideInfo, tile: int, mpp: Optional[float] = None, level: Optional[int] = None,
               overlap: int = 0, slide_mpp: Optional[float] = None) -> TilePlan:
    """The :class:`TilePlan` for ``tile`` px tiles at ``mpp`` or at pyramid ``level``
    (exactly one of them), with ``overlap`` px shared by neighbouring tiles."""
    if tile < 8:
        raise DataError(f"--tile must be at least 8 pixels, got {tile}")
    if not 0 <= overlap < tile:
        raise DataError(f"--overlap must be in [0, tile) = [0, {tile}), got {overlap}")
    if (mpp is None) == (level is None):
        raise DataError("give exactly one of --mpp (output microns per pixel) and --level (pyramid level)")
    base = slide_mpp if slide_mpp is not None else info.mpp
    if level is not None:
        if not 0 <= level < info.level_count:
            raise DataError(
                f"{info.path}: no pyramid level {level}: the slide has levels 0..{info.level_count - 1} "
                f"({', '.join(f'{w}x{h}' for w, h in info.level_dimensions)}); pick one of them"
            )
        down = info.level_downsamples[level]
        out_mpp = base * down if base is not None else None
        read, scale = tile, down
    else:
        assert mpp is not None
        if not mpp > 0:
            raise DataError(f"--mpp must be positive, got {mpp}")
        level, level_mpp = choose_level(info, mpp, slide_mpp)
        out_mpp = mpp
        ratio = mpp / level_mpp
        read = tile if abs(ratio - 1) <= MPP_TOLERANCE else int(round(tile * ratio))
        scale = read * info.level_downsamples[level] / tile
    plan = TilePlan(level=level, tile=tile, read_size=read, footprint0=tile * scale,
                    step0=(tile - overlap) * scale, mpp=out_mpp)
    w0, h0 = info.level_dimensions[0]
    if plan.footprint0 > min(w0, h0):
        res = f"{out_mpp:.3g} um/px" if out_mpp is not None else f"level {level}"
        raise DataError(
            f"{info.path}: a {tile} px tile at {res} covers {plan.footprint0:.0f} level-0 px but the slide is "
            f"{w0} x {h0}; use a smaller --tile or a finer --mpp/--level"
        )
    return plan
