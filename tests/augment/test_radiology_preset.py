"""The ``radiology`` preset: the gray preset plus a random gamma, the same on the CPU and
the batched executors; the gray preset itself draws no gamma (its random stream and
published numbers stay as they were)."""

from __future__ import annotations

import numpy as np
import torch

from medssl.augment.gpu import build_batch_augmentation
from medssl.augment.presets import build_augmentation, resolve_params

ONLY_GAMMA = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), rotate_degrees=0.0, hflip_p=0.0, jitter_p=0.0,
                  gamma_p=1.0, gamma=0.3, out_channels=1, mean=(0.0,), std=(1.0,))


def ramp(size: int = 32) -> np.ndarray:
    return np.tile(np.linspace(10, 245, size).round().astype(np.uint8), (size, 1))[..., None]


def exponents(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    mask = (x > 0.05) & (x < 0.95)
    return np.log(y[mask]) / np.log(x[mask])


def test_gray_has_no_gamma_and_radiology_has():
    assert resolve_params("gray").plan().gamma_p == 0.0
    plan = resolve_params("radiology").plan()
    assert (plan.gamma_p, plan.gamma, plan.vflip_p, plan.saturation, plan.hue) == (0.5, 0.3, 0.0, 0.0, 0.0)


def test_cpu_gamma_is_one_exponent_in_range():
    aug = build_augmentation({"name": "radiology", **ONLY_GAMMA}, 32)
    x = ramp().astype(np.float32)[..., 0] / 255.0
    seen = []
    for seed in range(8):
        y = aug(ramp(), seed).numpy()[0]
        g = exponents(x, y)
        assert np.ptp(g) < 1e-3 and 0.7 - 1e-4 <= g.mean() <= 1.3 + 1e-4  # one exponent per view
        seen.append(float(g.mean()))
    assert np.ptp(seen) > 0.1  # and it varies between views


def test_batched_gamma_matches_the_cpu_rule():
    aug = build_batch_augmentation({"name": "radiology", **ONLY_GAMMA}, 32)
    batch = torch.from_numpy(np.stack([ramp()] * 6)).permute(0, 3, 1, 2).contiguous()
    y = aug(batch, torch.Generator().manual_seed(0)).numpy()[:, 0]
    x = ramp().astype(np.float32)[..., 0] / 255.0
    gs = [exponents(x, yi) for yi in y]
    assert all(np.ptp(g) < 1e-2 and 0.69 <= g.mean() <= 1.31 for g in gs)
    assert np.ptp([g.mean() for g in gs]) > 0.1
