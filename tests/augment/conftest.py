"""Real images shared by the augmentation tests (loaded once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_file


@pytest.fixture(scope="session")
def ihc() -> np.ndarray:
    """The real IHC colon image shipped with scikit-image (512x512 RGB uint8)."""
    from skimage import data

    return data.immunohistochemistry()


@pytest.fixture(scope="session")
def he_tiles() -> np.ndarray:
    """Real 96x96 H&E tiles (N, 96, 96, 3) uint8; skips when the shared data is absent."""
    with np.load(shared_file("histology/he_patches_96x96_unlabeled.npz"), allow_pickle=False) as z:
        return z["images"][:32].copy()
