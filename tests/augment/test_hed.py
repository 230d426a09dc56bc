"""HED colour deconvolution and stain jitter (medssl/augment/hed.py) on real IHC and H&E images."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2hed

from medssl.augment import hed


def test_rgb_to_hed_matches_skimage_up_to_units(ihc: np.ndarray) -> None:
    ours = hed.rgb_to_hed(ihc)
    ref = rgb2hed(ihc) * -np.log(hed.OD_EPS)  # skimage divides the OD by -ln(1e-6)
    np.testing.assert_allclose(np.maximum(ours, 0), ref, atol=2e-4)
    assert (ours < 0).any(), "negative stain values are kept (skimage clips them)"


@pytest.mark.parametrize("source", ["ihc", "he_tiles"])
def test_round_trip_is_identity_on_real_tissue(source: str, request: pytest.FixtureRequest) -> None:
    images = request.getfixturevalue(source)
    rgb = np.rint(hed.hed_to_rgb(hed.rgb_to_hed(images.reshape(-1, images.shape[-2], 3))) * 255)
    assert np.abs(rgb - images.reshape(-1, images.shape[-2], 3)).max() <= 1


def test_theta_zero_is_identity(ihc: np.ndarray, he_tiles: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    for img in (ihc, he_tiles[0], he_tiles[5]):
        out = hed.hed_jitter(img, rng, theta=0.0)
        assert out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).max() <= 1


def test_jitter_acts_as_a_s_plus_b_on_each_stain(he_tiles: np.ndarray) -> None:
    x = he_tiles[3].astype(np.float32) / 255
    a, b = np.array([1.15, 0.9, 1.05]), np.array([0.04, -0.03, 0.02])
    out = hed.apply_hed_jitter(x, a, b)
    unclipped = ((out > 1e-4) & (out < 1 - 1e-4)).all(-1)
    assert unclipped.mean() > 0.5
    got = hed.rgb_to_hed(out)[unclipped]
    want = (a * hed.rgb_to_hed(x) + b)[unclipped]
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_jitter_clips_never_rescales() -> None:
    white = np.full((8, 8, 3), 255, np.uint8)
    # a negative shift on a white (zero-stain) image would need RGB > 1: it must stay white,
    # where a min-max rescale would stretch it to arbitrary colours
    out = hed.apply_hed_jitter(white, np.ones(3), np.full(3, -0.2))
    assert (out == 255).all()


def test_params_cover_the_stated_ranges() -> None:
    rng = np.random.default_rng(1)
    draws = [hed.sample_hed_params(rng, 0.2) for _ in range(500)]
    a = np.stack([d[0] for d in draws])
    b = np.stack([d[1] for d in draws])
    assert a.min() >= 0.8 and a.max() <= 1.2 and b.min() >= -0.2 and b.max() <= 0.2
    assert a.min() < 0.82 and a.max() > 1.18 and b.min() < -0.18 and b.max() > 0.18
    assert a.shape == b.shape == (500, 3)


def test_identity_parameters_give_identity_matrix() -> None:
    k, c = hed.hed_jitter_matrix(np.ones(3), np.zeros(3))
    np.testing.assert_allclose(k, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(c, 0)


def test_light_jitter_is_light_on_real_tiles(he_tiles: np.ndarray) -> None:
    # the worst case of θ = 0.05 moves the mean colour of a real tile by a few percent
    out = hed.apply_hed_jitter(he_tiles[0], np.full(3, 1.05), np.full(3, 0.05))
    shift = np.abs(out.reshape(-1, 3).mean(0) - he_tiles[0].reshape(-1, 3).mean(0))
    assert 1 < shift.max() < 25


def test_non_rgb_input_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"RGB image of shape \(H, W, 3\)"):
        hed.rgb_to_hed(np.zeros((4, 4, 1), np.uint8))
