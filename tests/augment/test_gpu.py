"""The batched on-device pipeline (medssl/augment/gpu.py), run on CPU tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medssl.augment import colour, geometry, gpu, hed
from medssl.augment.gpu import build_batch_augmentation
from medssl.errors import ConfigError


@pytest.fixture(scope="module")
def batch(he_tiles: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(he_tiles[:8]).permute(0, 3, 1, 2).contiguous()


def _denorm(y: torch.Tensor, aug: gpu.BatchAugment) -> torch.Tensor:
    mean, std = aug.plan.normalisation(y.shape[1])
    return y * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)


@pytest.mark.parametrize("name", ["histo", "natural", "gray", "eval"])
@pytest.mark.parametrize("size", [28, 64, 96])
def test_shapes_dtype_range(name: str, size: int, batch: torch.Tensor) -> None:
    aug = build_batch_augmentation(name, size)
    for inp in (batch, batch.float() / 255):
        y = aug(inp, torch.Generator().manual_seed(0))
        assert y.dtype == torch.float32 and tuple(y.shape) == (8, 3, size, size)
        x = _denorm(y, aug)
        assert x.min() >= -1e-4 and x.max() <= 1 + 1e-4


def test_gray_one_channel_output(batch: torch.Tensor) -> None:
    y = build_batch_augmentation("gray", 28, out_channels=1)(batch[:, :1], torch.Generator().manual_seed(0))
    assert tuple(y.shape) == (8, 1, 28, 28)


def test_parameters_are_drawn_per_sample(batch: torch.Tensor) -> None:
    same = batch[:1].expand(8, -1, -1, -1).contiguous()
    for overrides in ({}, {"hed_theta": 0.0, "jitter_p": 0.0, "blur_p": 0.0}, {"scale": (1.0, 1.0), "d4": False, "blur_p": 0.0, "jitter_p": 0.0}):
        y = build_batch_augmentation("histo", 64, **overrides)(same, torch.Generator().manual_seed(1))
        distinct = {y[i].numpy().round(4).tobytes() for i in range(8)}
        assert len(distinct) >= 6, overrides


def test_seeded_runs_repeat(batch: torch.Tensor) -> None:
    aug = build_batch_augmentation("histo", 64)
    a = aug(batch, torch.Generator().manual_seed(3))
    b = aug(batch, torch.Generator().manual_seed(3))
    c = aug(batch, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batched_hed_matches_per_image_hed(he_tiles: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    params = [hed.sample_hed_params(rng, 0.2) for _ in range(4)]
    x = he_tiles[:4].astype(np.float32) / 255
    a = torch.tensor(np.stack([p[0] for p in params]))
    b = torch.tensor(np.stack([p[1] for p in params]))
    got = gpu.hed_jitter_batch(torch.from_numpy(x).permute(0, 3, 1, 2), a, b).permute(0, 2, 3, 1).numpy()
    for i, (ai, bi) in enumerate(params):
        np.testing.assert_allclose(got[i], hed.apply_hed_jitter(x[i], ai, bi), atol=2e-5)


def test_batched_colour_jitter_and_blur_match_cpu_ops(he_tiles: np.ndarray) -> None:
    x = he_tiles[:3].astype(np.float32) / 255
    factors = [(1.2, 0.8, 1.3, 0.04), (0.7, 1.3, 0.6, -0.05), (1.0, 1.0, 1.0, 0.0)]
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    got = gpu.colour_jitter_batch(xt, torch.tensor(factors)).permute(0, 2, 3, 1).numpy()
    for i, f in enumerate(factors):
        np.testing.assert_allclose(got[i], colour.colour_jitter(x[i], *f), atol=3e-3)
    sig = [1.5, 0.0, 0.4]
    got = gpu.blur_batch(xt, torch.tensor(sig), 6).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got[0], colour.gaussian_blur(x[0], 1.5, 6), atol=1e-5)
    np.testing.assert_allclose(got[1], x[1], atol=1e-6)


def test_d4_matrices_realise_the_cpu_d4_elements_exactly(he_tiles: np.ndarray) -> None:
    img = he_tiles[0][:16, :16]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    for k in range(8):
        lin = gpu.d4_matrices(torch.tensor([k]))
        theta = torch.cat([lin, torch.zeros(1, 2, 1, dtype=torch.float64)], 2).float()
        grid = torch.nn.functional.affine_grid(theta, [1, 3, 16, 16], align_corners=False)
        y = torch.nn.functional.grid_sample(x, grid, align_corners=False)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(y, geometry.d4(img, k), atol=1e-3)


def test_d4_reaches_all_elements_in_a_batch(he_tiles: np.ndarray) -> None:
    img = he_tiles[0][:16, :16]
    index = {geometry.d4(img, k).tobytes(): k for k in range(8)}
    aug = build_batch_augmentation("histo", 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hed_theta=0.0, jitter_p=0.0, mean=[0.0], std=[1 / 255])
    x = torch.from_numpy(img).permute(2, 0, 1)[None].expand(64, -1, -1, -1).contiguous()
    y = aug(x, torch.Generator().manual_seed(0)).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    seen = {index[y[i].tobytes()] for i in range(64)}
    assert seen == set(range(8))


def test_pcam_safe_batched_crops_keep_the_centre() -> None:
    r, c = torch.meshgrid(torch.arange(96), torch.arange(96), indexing="ij")
    img = torch.stack([2 * r, 2 * c, torch.full_like(r, 128)]).to(torch.uint8)
    x = img[None].expand(64, -1, -1, -1).contiguous()
    kw = dict(hed_theta=0.0, jitter_p=0.0, blur_p=0.0, scale=(0.05, 1.0))

    def centre_kept(aug: gpu.BatchAugment) -> torch.Tensor:
        y = _denorm(aug(x, torch.Generator().manual_seed(0)), aug) * 255 / 2
        rows, cols = y[:, 0].flatten(1), y[:, 1].flatten(1)
        return (rows.min(1).values <= 33) & (rows.max(1).values >= 62) & (cols.min(1).values <= 33) & (cols.max(1).values >= 62)

    assert centre_kept(build_batch_augmentation("histo", 96, pcam_safe=True, **kw)).all()
    assert not centre_kept(build_batch_augmentation("histo", 96, **kw)).all()


def test_sampled_boxes_keep_centre_and_stay_inside() -> None:
    boxes = gpu.sample_crop_boxes(torch.Generator().manual_seed(0), 500, 96, 96, (0.05, 1.0), (0.75, 4 / 3), keep_center=32)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 96).all() and (left + w <= 96).all()
    assert (top <= 32).all() and (top + h >= 64).all() and (left <= 32).all() and (left + w >= 64).all()


def test_eval_batch_matches_cpu_eval_without_resampling(he_tiles: np.ndarray, batch: torch.Tensor) -> None:
    from medssl.augment import build_augmentation

    y = build_batch_augmentation("eval", 96)(batch)
    ref = torch.stack([build_augmentation("eval", 96)(t) for t in he_tiles[:8]])
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=0)  # grid_sample at pixel centres


def test_bad_inputs_and_unsupported_options(batch: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="stain_normalize runs per image"):
        build_batch_augmentation("histo", 32, stain_normalize=True)
    aug = build_batch_augmentation("histo", 32)
    with pytest.raises(ConfigError, match=r"\[B, 1\|3, H, W\]"):
        aug(batch[0])
    with pytest.raises(ConfigError, match="needs RGB batches"):
        aug(batch[:, :1])


def test_batch_views_differ_and_follow_per_view_configs(batch: torch.Tensor) -> None:
    views = gpu.build_batch_views("histo", 32)
    gen = torch.Generator().manual_seed(0)
    a, b = (v(batch, gen) for v in views)
    assert a.shape == b.shape == (8, 3, 32, 32) and not torch.equal(a, b)
    asym = gpu.build_batch_views([{"name": "histo", "blur_p": 1.0}, {"name": "eval"}], 64)
    assert [v.plan.mode for v in asym] == ["random", "eval"] and asym[0].plan.blur_p == 1.0
    with pytest.raises(ConfigError, match="non-empty list"):
        gpu.build_batch_views([], 32)


def test_crop_boxes_fall_back_to_the_cpu_paths_centred_crop():
    # A 1:1 crop of the whole area never fits a 10 x 40 image: every sample falls back,
    # to the same largest centred crop within the ratio range as the per-image path.
    boxes = gpu.sample_crop_boxes(torch.Generator().manual_seed(0), 7, 10, 40, (1.0, 1.0), (1.0, 1.0))
    assert geometry.fallback_crop(10, 40, (1.0, 1.0)) == (0, 15, 10, 10)
    assert boxes.tolist() == [[0, 15, 10, 10]] * 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["histo", "natural", "gray", "eval"])
def test_every_preset_runs_on_the_gpu_and_matches_the_cpu(name: str, batch: torch.Tensor) -> None:
    """The pipeline is meant for GPUs: a CUDA batch stays there (every constant it uses too)
    and, with the same generator (draws are made on the CPU), gives the CPU's views."""
    aug = build_batch_augmentation(name, 64)
    on_gpu = aug(batch.cuda(), torch.Generator().manual_seed(5))
    on_cpu = aug(batch, torch.Generator().manual_seed(5))
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-3, atol=1e-3)
