"""D4 group, random resized crops and their centre-keeping variant (medssl/augment/geometry.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.augment import geometry


def _asymmetric(h: int = 6, w: int = 6, c: int = 3) -> np.ndarray:
    return np.arange(h * w * c, dtype=np.uint8).reshape(h, w, c)


def test_d4_preserves_pixel_multiset_and_has_8_distinct_elements(he_tiles: np.ndarray) -> None:
    img = he_tiles[0]
    outs = [geometry.d4(img, k) for k in range(8)]
    flat = np.sort(img.reshape(-1, 3), axis=0)
    for o in outs:
        assert o.shape == img.shape and o.dtype == np.uint8
        np.testing.assert_array_equal(np.sort(o.reshape(-1, 3), axis=0), flat)
    assert len({o.tobytes() for o in outs}) == 8
    np.testing.assert_array_equal(outs[0], img)


def test_d4_is_a_group_closed_under_composition() -> None:
    img = _asymmetric()
    elements = {geometry.d4(img, k).tobytes() for k in range(8)}
    for i in range(8):
        for j in range(8):
            assert geometry.d4(geometry.d4(img, i), j).tobytes() in elements


def test_random_d4_reaches_all_8_elements_about_equally() -> None:
    img = _asymmetric()
    index = {geometry.d4(img, k).tobytes(): k for k in range(8)}
    rng = np.random.default_rng(0)
    counts = np.bincount([index[geometry.random_d4(img, rng).tobytes()] for _ in range(800)], minlength=8)
    assert (counts > 60).all() and (counts < 140).all()


def test_d4_rejects_bad_element() -> None:
    with pytest.raises(ValueError, match="0..7"):
        geometry.d4(_asymmetric(), 8)


def test_resized_crop_stays_inside_and_respects_scale() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        box = geometry.sample_resized_crop(rng, 96, 80, (0.3, 1.0), (3 / 4, 4 / 3))
        assert 0 <= box.top and box.top + box.height <= 96
        assert 0 <= box.left and box.left + box.width <= 80
        assert 0.25 <= box.height * box.width / (96 * 80) <= 1.0


@pytest.mark.parametrize("keep", [32, 10])
def test_keep_center_crops_always_contain_the_centre(keep: int) -> None:
    rng = np.random.default_rng(1)
    r0, r1, c0, c1 = geometry.centre_box(96, 96, keep)
    for _ in range(500):
        box = geometry.sample_resized_crop(rng, 96, 96, (0.05, 1.0), (3 / 4, 4 / 3), keep_center=keep)
        assert box.top <= r0 and box.top + box.height >= r1
        assert box.left <= c0 and box.left + box.width >= c1


def test_plain_crops_do_cut_the_centre_so_the_keep_test_can_fail() -> None:
    rng = np.random.default_rng(1)
    r0, r1, c0, c1 = geometry.centre_box(96, 96, 32)
    boxes = [geometry.sample_resized_crop(rng, 96, 96, (0.05, 1.0), (3 / 4, 4 / 3)) for _ in range(200)]
    assert any(b.top > r0 or b.top + b.height < r1 or b.left > c0 or b.left + b.width < c1 for b in boxes)


def test_impossible_scale_falls_back_to_a_centred_crop() -> None:
    box = geometry.sample_resized_crop(np.random.default_rng(0), 40, 100, (0.9, 1.0), (1.0, 1.0))
    assert box == geometry.CropBox(0, 30, 40, 40)


def test_crop_resize_and_centre_crop_shapes() -> None:
    img = np.zeros((50, 70, 1), np.uint8)
    assert geometry.crop_resize(img, geometry.CropBox(0, 0, 50, 60), 28).shape == (28, 28, 1)
    assert geometry.centre_crop_resize(img, 96, 0.875).shape == (96, 96, 1)


def test_rotation_keeps_a_flat_image_flat_without_black_corners() -> None:
    img = np.full((32, 32, 3), 200, np.uint8)
    out = geometry.rotate(img, 10.0)
    assert out.shape == img.shape and (out == 200).all()
