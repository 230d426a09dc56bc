"""Presets, their validation and the per-image CPU pipeline (presets.py, pipeline.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medssl.augment import build_augmentation, resolve_params
from medssl.augment.presets import PCAM_CENTER, HistoParams
from medssl.errors import ConfigError, DataError, RegistryError
from medssl.registry import AUGMENTATIONS

PRESETS = ["histo", "natural", "gray", "eval"]


def denorm(view: torch.Tensor, aug) -> np.ndarray:
    """Back to [0, 1] HWC with the preset's own statistics."""
    mean, std = aug.plan.normalisation(view.shape[0])
    return view.numpy().transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)


def coordinate_image(size: int = 96) -> np.ndarray:
    """R encodes the source row, G the source column (value = 2 * index)."""
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([2 * r, 2 * c, np.full_like(r, 128)], -1).astype(np.uint8)


def test_registry_lists_every_preset() -> None:
    assert set(PRESETS) <= set(AUGMENTATIONS.names())
    assert isinstance(AUGMENTATIONS.build({"name": "histo", "hed_theta": 0.2}), HistoParams)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("size", [28, 64, 96])
def test_output_dtype_shape_and_range(name: str, size: int, he_tiles: np.ndarray) -> None:
    aug = build_augmentation(name, size)
    rng = np.random.default_rng(0)
    for img in he_tiles[:3]:
        v = aug(img, rng)
        assert v.dtype == torch.float32 and tuple(v.shape) == (3, size, size)
        x = denorm(v, aug)
        assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5


@pytest.mark.parametrize("size", [28, 64, 96])
def test_gray_preset_channels(size: int, he_tiles: np.ndarray) -> None:
    gray_img = he_tiles[0].mean(-1, keepdims=True).astype(np.uint8)
    one = build_augmentation({"name": "gray", "out_channels": 1}, size)(gray_img, 0)
    three = build_augmentation("gray", size)(gray_img, 0)
    assert tuple(one.shape) == (1, size, size) and tuple(three.shape) == (3, size, size)
    # 3 channels are the gray channel repeated (same normalised values: the stats are channel-specific)
    x3 = denorm(three, build_augmentation("gray", size))
    np.testing.assert_allclose(x3[..., 0], x3[..., 2], atol=1e-5)
    # an RGB input is reduced to luma first
    assert tuple(build_augmentation("gray", size)(he_tiles[0], 0).shape) == (3, size, size)


def test_eval_keeps_input_channels_unless_told() -> None:
    gray = np.full((40, 30, 1), 90, np.uint8)
    assert tuple(build_augmentation("eval", 28)(gray).shape) == (1, 28, 28)
    assert tuple(build_augmentation("eval", 28, out_channels=3)(gray).shape) == (3, 28, 28)
    assert tuple(build_augmentation("natural", 28)(gray[..., 0], 0).shape) == (3, 28, 28)


def test_eval_is_deterministic_and_centre_cropped(he_tiles: np.ndarray) -> None:
    aug = build_augmentation("eval", 96, crop_fraction=0.5)
    a, b = aug(he_tiles[0], 1), aug(he_tiles[0], 2)
    assert torch.equal(a, b)
    # crop_fraction 0.5 keeps exactly the central 48x48, upscaled
    coord = denorm(aug(coordinate_image(), 0), aug) * 255 / 2
    assert abs(coord[..., 0].min() - 24) < 0.6 and abs(coord[..., 0].max() - 71) < 0.6


@pytest.mark.parametrize("name", ["histo", "natural", "gray"])
def test_seeded_runs_repeat_and_seeds_differ(name: str, he_tiles: np.ndarray) -> None:
    aug = build_augmentation(name, 64)
    a = aug(he_tiles[1], np.random.default_rng(7))
    b = aug(he_tiles[1], np.random.default_rng(7))
    c = aug(he_tiles[1], np.random.default_rng(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(aug(he_tiles[1], g1), aug(he_tiles[1], g2))


def _rows_cols_seen(aug, image: np.ndarray, seed: int) -> tuple[float, float, float, float]:
    x = denorm(aug(image, np.random.default_rng(seed)), aug) * 255 / 2
    return x[..., 0].min(), x[..., 0].max(), x[..., 1].min(), x[..., 1].max()


def test_pcam_safe_crops_keep_the_centre_32x32() -> None:
    geometric_only = dict(hed_theta=0.0, jitter_p=0.0, blur_p=0.0, scale=(0.05, 1.0))
    img = coordinate_image(96)
    lo, hi = (96 - PCAM_CENTER) // 2, (96 + PCAM_CENTER) // 2 - 1  # rows/cols 32..63
    safe = build_augmentation("histo", 96, pcam_safe=True, **geometric_only)
    for seed in range(60):
        rmin, rmax, cmin, cmax = _rows_cols_seen(safe, img, seed)
        # D4 permutes pixels but R still encodes source rows: min/max give the crop's rows
        assert rmin <= lo + 0.6 and rmax >= hi - 0.6 and cmin <= lo + 0.6 and cmax >= hi - 0.6
    unsafe = build_augmentation("histo", 96, **geometric_only)
    cut = [
        not (r0 <= lo + 0.6 and r1 >= hi - 0.6 and c0 <= lo + 0.6 and c1 >= hi - 0.6)
        for r0, r1, c0, c1 in (_rows_cols_seen(unsafe, img, s) for s in range(60))
    ]
    assert any(cut), "without pcam_safe some crops must cut the centre (else this test proves nothing)"


def test_keep_center_value_and_pcam_safe_agree() -> None:
    assert resolve_params("histo", pcam_safe=True).plan().keep_center == 32
    assert resolve_params("histo", keep_center=48, pcam_safe=True).plan().keep_center == 48
    assert resolve_params("gray", keep_center=10).plan().keep_center == 10


def test_histo_has_no_solarize_and_keeps_white_background_bright() -> None:
    names = {f.name for f in dataclasses.fields(HistoParams)}
    assert not any("solar" in n for n in names)
    with pytest.raises(ConfigError, match="solarize_p"):
        build_augmentation("histo", 64, solarize_p=0.2)
    aug = build_augmentation("histo", 64)
    white = np.full((96, 96, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    # solarize would invert a white background to black; stain + colour jitter keep it bright
    assert min(denorm(aug(white, rng), aug).mean() for _ in range(50)) > 0.7


def test_histo_views_change_colour_and_geometry(he_tiles: np.ndarray) -> None:
    aug = build_augmentation("histo", 96)
    ref = build_augmentation("eval", 96)(he_tiles[2])
    views = [aug(he_tiles[2], np.random.default_rng(s)) for s in range(4)]
    assert all(not torch.allclose(v, ref, atol=1e-3) for v in views)


def test_grayscale_off_by_default_in_histo() -> None:
    assert resolve_params("histo").plan().grayscale_p == 0.0
    assert resolve_params("natural").plan().grayscale_p == 0.2


def test_gray_preset_has_no_vertical_flip_nor_colour_ops() -> None:
    plan = resolve_params("gray").plan()
    assert plan.vflip_p == 0 and not plan.d4 and plan.saturation == 0 and plan.hue == 0 and plan.hed_theta == 0
    assert plan.rotate_degrees <= 10
    with pytest.raises(ConfigError, match="'vflip_p'"):
        resolve_params("gray", vflip_p=0.5)


def test_hed_strength_names_and_overrides() -> None:
    assert resolve_params("histo", hed_theta="strong").plan().hed_theta == 0.2
    assert resolve_params({"name": "histo", "hed_theta": "light", "scale": [0.5, 1.0]}).plan().scale == (0.5, 1.0)
    # keyword overrides win over the mapping
    assert resolve_params({"name": "histo", "hue": 0.01}, hue=0.02).plan().hue == 0.02


def test_unknown_preset_names_it_and_suggests() -> None:
    with pytest.raises(RegistryError, match=r"unknown augmentation 'histoo'.*'histo'"):
        build_augmentation("histoo", 32)
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        build_augmentation({"hue": 0.1}, 32)


def test_bad_parameter_key_names_it_and_the_closest_valid_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'hed_thta' in augmentation 'histo'\. Did you mean 'hed_theta'"):
        build_augmentation({"name": "histo", "hed_thta": 0.1}, 32)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"hue": 0.7}, r"'hue' must be in \[0.0, 0.5\]"),
        ({"scale": [0.9, 0.2]}, r"'scale' must have low <= high"),
        ({"scale": 0.5}, r"'scale' must be a pair"),
        ({"hed_theta": "medium"}, r"'hed_theta' must be a number .* \['light', 'strong'\]"),
        ({"d4": "yes"}, r"'d4' must be true or false"),
        ({"blur_p": -0.1}, r"'blur_p' must be in"),
        ({"std": [0.2, 0.0, 0.2]}, r"'std' must be positive"),
        ({"mean": [0.5, 0.5]}, r"'mean' must be a list of 1 or 3"),
    ],
)
def test_bad_parameter_values_raise_config_error(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_augmentation("histo", 32, **override)


def test_bad_image_size_and_channel_mismatch() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        build_augmentation("histo", 4)
    with pytest.raises(ConfigError, match="out_channels"):
        build_augmentation("gray", 32, out_channels=2)


def test_histo_rejects_gray_images_and_bad_arrays() -> None:
    aug = build_augmentation("histo", 32)
    with pytest.raises(DataError, match="needs RGB images.*'gray' preset"):
        aug(np.zeros((40, 40, 1), np.uint8), 0)
    with pytest.raises(DataError, match="uint8"):
        aug(np.zeros((40, 40, 3), np.float32), 0)
    with pytest.raises(DataError, match=r"shape \(H, W, 1\|3\)"):
        aug(np.zeros((40, 40, 4), np.uint8), 0)


def test_user_statistics_are_used() -> None:
    aug = build_augmentation("eval", 16, mean=[0.5], std=[0.25])
    out = aug(np.full((16, 16, 3), 255, np.uint8))
    np.testing.assert_allclose(out.numpy(), 2.0, atol=1e-6)


def test_eval_preprocess_resizes_and_normalises_with_the_given_statistics() -> None:
    from medssl.augment.presets import eval_preprocess

    image = np.full((40, 40, 3), 255, dtype=np.uint8)
    out = eval_preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 3, 32)(image, np.random.default_rng(0))
    assert tuple(out.shape) == (3, 32, 32)
    np.testing.assert_allclose(out.numpy(), 2.0, atol=1e-5)  # (1 - 0.5) / 0.25
    gray = eval_preprocess((0.5,), (0.5,), 1, 16)(image[..., :1], np.random.default_rng(0))
    assert tuple(gray.shape) == (1, 16, 16)
