"""Multi-view wrapper and dataset (medssl/augment/views.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medssl.augment.views import MultiView, MultiViewDataset, build_views, item_rng, parse_augment_section, seed_worker
from medssl.errors import ConfigError


class _Tiles(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], i % 2


def test_two_views_by_default_and_they_differ(he_tiles: np.ndarray) -> None:
    views = build_views("histo", 64)
    out = views(he_tiles[0], np.random.default_rng(0))
    assert len(out) == 2 and all(v.shape == (3, 64, 64) and v.dtype == torch.float32 for v in out)
    assert not torch.allclose(out[0], out[1])


def test_asymmetric_per_view_configs(he_tiles: np.ndarray) -> None:
    views = build_views([{"name": "histo", "blur_p": 1.0}, {"name": "histo", "blur_p": 0.1}, "eval"], 64)
    assert views.n_views == 3
    assert [t.plan.blur_p for t in views.transforms] == [1.0, 0.1, 0.0]
    out = views(he_tiles[0], 0)
    assert [tuple(v.shape) for v in out] == [(3, 64, 64)] * 3


def test_view_count_and_bad_specs() -> None:
    assert build_views("natural", 32, n_views=4).n_views == 4
    with pytest.raises(ConfigError, match="positive integer"):
        build_views("natural", 32, n_views=0)
    with pytest.raises(ConfigError, match="non-empty list"):
        build_views([], 32)
    with pytest.raises(ConfigError, match="at least one view"):
        MultiView([])


def test_dataset_returns_views_label_index_reproducibly(he_tiles: np.ndarray) -> None:
    ds = MultiViewDataset(_Tiles(he_tiles[:6]), build_views("histo", 32), seed=5)
    views, label, index = ds[3]
    assert len(views) == 2 and label == 1 and index == 3
    again, _, _ = ds[3]
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    ds.set_epoch(1)
    other, _, _ = ds[3]
    assert not torch.equal(views[0], other[0]), "a new epoch draws new views"
    assert ds.epoch == 1


def _expected(ds: MultiViewDataset, n: int, batch: int) -> torch.Tensor:
    out = []
    for start in range(0, n, batch):
        items = [ds[i][0] for i in range(start, min(n, start + batch))]
        out.append(torch.cat([torch.stack([v[k] for v in items]) for k in range(len(items[0]))]))
    return torch.cat(out)


def _collect(loader: DataLoader) -> torch.Tensor:
    return torch.cat([torch.cat(v, 0) for v, _, _ in loader])


def test_views_do_not_depend_on_worker_count(he_tiles: np.ndarray) -> None:
    ds = MultiViewDataset(_Tiles(he_tiles[:8]), build_views("histo", 28), seed=0)
    ds.set_epoch(2)
    single = _collect(DataLoader(ds, batch_size=4, num_workers=0))
    assert torch.equal(single, _expected(ds, 8, 4))
    assert torch.equal(single, _collect(DataLoader(ds, batch_size=4, num_workers=2, worker_init_fn=seed_worker)))


def test_set_epoch_reaches_persistent_workers(he_tiles: np.ndarray) -> None:
    ds = MultiViewDataset(_Tiles(he_tiles[:4]), build_views("histo", 28), seed=0)
    loader = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True)
    first = _collect(loader)
    ds.set_epoch(1)
    second = _collect(loader)
    assert not torch.equal(first, second)
    assert torch.equal(second, _expected(ds, 4, 2))


def test_item_rng_streams_are_distinct_and_stable() -> None:
    a = item_rng(0, 0, 1).random(4)
    assert np.array_equal(a, item_rng(0, 0, 1).random(4))
    assert not np.array_equal(a, item_rng(0, 1, 1).random(4))
    assert not np.array_equal(a, item_rng(0, 0, 2).random(4))
    assert not np.array_equal(a, item_rng(1, 0, 1).random(4))


def test_parse_augment_section_splits_preset_and_run_keys() -> None:
    sec = parse_augment_section({"name": "histo", "hed_theta": 0.2, "image_size": 64, "device": "cpu", "n_views": 3})
    assert sec.views == {"name": "histo", "hed_theta": 0.2}
    assert (sec.n_views, sec.image_size, sec.device) == (3, 64, "cpu")
    per_view = parse_augment_section({"views": [{"name": "histo"}, {"name": "eval"}]})
    assert per_view.n_views == 2 and per_view.device == "auto"
    assert build_views(per_view.views, 32).n_views == 2


@pytest.mark.parametrize(
    "section, message",
    [
        ([1, 2], "expected a mapping under the key 'augment'"),
        ({"name": "histo", "device": "gpu"}, "augment.device must be one of auto, cpu, cuda, got 'gpu'"),
        ({"name": "histo", "image_size": "96"}, "augment.image_size must be an integer"),
        ({"name": "histo", "n_views": 0}, "augment.n_views must be a positive integer"),
        ({"views": []}, "augment.views must be a non-empty list"),
        ({"views": [{"name": "histo"}], "hue": 0.1}, r"put preset parameters inside each view.*found hue"),
    ],
)
def test_parse_augment_section_errors(section, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_augment_section(section, source="run.yaml")
