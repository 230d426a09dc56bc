"""Optional Macenko stain normalisation through MONAI (medssl/augment/stain_norm.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.augment import build_augmentation
from medssl.augment.stain_norm import MacenkoNormalizer


def test_normalises_real_tiles_towards_a_common_stain(he_tiles: np.ndarray) -> None:
    norm = MacenkoNormalizer()
    tiles = [he_tiles[i] for i in range(0, 32, 4)]
    out = [norm(t) for t in tiles]
    assert all(o.shape == t.shape and o.dtype == np.uint8 for o, t in zip(out, tiles))
    assert any(not np.array_equal(o, t) for o, t in zip(out, tiles))
    # the spread of mean colours across tiles shrinks after normalisation
    before = np.std([t.reshape(-1, 3).mean(0) for t in tiles], axis=0).mean()
    after = np.std([o.reshape(-1, 3).mean(0) for o in out], axis=0).mean()
    assert after < before


def test_background_tile_passes_through_unchanged() -> None:
    blank = np.full((32, 32, 3), 245, np.uint8)
    assert np.array_equal(MacenkoNormalizer()(blank), blank)


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        MacenkoNormalizer()(np.zeros((8, 8, 1), np.uint8))


def test_preset_option_runs_it_before_augmenting(he_tiles: np.ndarray) -> None:
    plain = build_augmentation("eval", 96)(he_tiles[0])
    normed = build_augmentation("eval", 96, stain_normalize=True)(he_tiles[0])
    assert normed.shape == plain.shape and not np.allclose(normed.numpy(), plain.numpy())
