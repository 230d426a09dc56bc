"""Otsu-on-saturation tissue mask and per-tile tissue fractions (medssl/wsi/tissue.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.errors import DataError
from medssl.wsi.tissue import otsu_tissue_mask, saturation, tile_fractions


def test_saturation_matches_hsv_definition():
    rgb = np.array([[[255, 255, 255], [200, 100, 50], [0, 0, 0], [10, 20, 40]]], dtype=np.uint8)
    assert saturation(rgb).tolist() == [[0, (200 - 50) * 255 // 200, 0, (40 - 10) * 255 // 40]]


def test_mask_separates_stained_tissue_from_glass():
    rng = np.random.default_rng(0)
    img = np.full((120, 160, 3), 240, np.uint8) + rng.integers(0, 10, (120, 160, 3)).astype(np.uint8)
    img[:, 80:] = [180, 90, 170]  # H&E-like pink/purple on the right half
    mask = otsu_tissue_mask(img)
    assert mask[:, 84:].all() and not mask[:, :76].any()


def test_blank_glass_has_no_tissue():
    assert not otsu_tissue_mask(np.full((64, 64, 3), 235, np.uint8)).any()


def test_mask_rejects_non_rgb():
    with pytest.raises(DataError, match="expected an \\(H, W, 3\\) uint8 RGB image"):
        otsu_tissue_mask(np.zeros((8, 8), np.uint8))


def test_tile_fractions_match_a_direct_count():
    rng = np.random.default_rng(1)
    mask = rng.random((50, 70)) > 0.6
    scale, side = 4.0, 40.0  # 4 level-0 px per mask px, tiles of 10 mask px
    corners = np.array([[0, 0], [40, 80], [200, 120], [240, 160]])
    got = tile_fractions(mask, corners, side, scale)
    for (x, y), g in zip(corners, got):
        r0, c0 = int(y / scale), int(x / scale)
        assert g == pytest.approx(mask[r0:r0 + 10, c0:c0 + 10].mean())


def test_tile_fraction_at_the_edge_uses_the_pixels_inside():
    mask = np.ones((10, 10), bool)
    assert tile_fractions(mask, np.array([[36, 36]]), 8.0, 4.0)[0] == pytest.approx(1.0)
