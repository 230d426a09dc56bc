"""Pixel + colour-histogram features (the ``--baseline pixels`` source)."""

import numpy as np
import pytest

from medssl.errors import EvaluationError
from medssl.eval.pixels import HIST_BINS, POOL_SIZE, colour_histogram, pixel_features


def test_pixel_features_are_pooled_pixels_then_the_histogram() -> None:
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[:8, :, 0] = 255  # top half red
    f = pixel_features([img, img[::-1]], size=2)
    assert f.shape == (2, 3 * 4 + 3 * (HIST_BINS + 2)) and f.dtype == np.float32
    np.testing.assert_allclose(f[0, :4], [1, 1, 0, 0])  # red channel, 2 x 2 area means
    np.testing.assert_allclose(f[1, :4], [0, 0, 1, 1])
    np.testing.assert_array_equal(f[0, 12:], colour_histogram(img[None])[0])


def test_mixed_gray_and_rgb_follow_the_first_image_and_sizes_may_differ() -> None:
    gray = np.full((10, 12), 128, dtype=np.uint8)
    rgb = np.full((20, 20, 3), 128, dtype=np.uint8)
    f = pixel_features([(gray, 0), (rgb, 1)])  # dataset-style (image, label) items
    assert f.shape == (2, POOL_SIZE ** 2 + HIST_BINS + 2)
    np.testing.assert_allclose(f[0], f[1], atol=1e-6)
    assert pixel_features([rgb, gray]).shape == (2, 3 * POOL_SIZE ** 2 + 3 * (HIST_BINS + 2))


def test_pixel_features_refuse_non_uint8_and_empty_input() -> None:
    with pytest.raises(EvaluationError, match="uint8"):
        pixel_features([np.zeros((4, 4), dtype=np.float32)])
    with pytest.raises(EvaluationError, match="no images"):
        pixel_features([])
