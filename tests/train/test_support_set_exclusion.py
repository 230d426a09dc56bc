"""Training with ``support_set.exclude_same_image``: with the queue as large as the training
set, later epochs find older rows of the query's own image unless they are excluded; the
metrics log says which (``nn_same_image``, ``nn_same_image_excluded``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medssl
from medssl.config import load_yaml
from medssl.errors import ConfigError
from medssl.train.config import load_pretrain_config
from pretrain_helpers import tiny_cfg

N = 32  # images: the queue holds all of them, an epoch is 4 steps of 8


@pytest.fixture(scope="module")
def small_sample(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.data.medmnist import write_medmnist_npz

    ds = medssl.open_dataset({"name": "medmnist", "path": str(sample_dir / "medmnist" / "ihcstain.npz"),
                              "split": "train"})
    images = np.stack([ds[i][0] for i in range(N)])
    labels = np.asarray(ds.labels())[:N].reshape(N, -1)
    root = tmp_path_factory.mktemp("small") / "sample"
    info = json.loads((sample_dir / "medmnist" / "ihcstain.json").read_text())
    write_medmnist_npz(root / "medmnist" / "ihcstain.npz", {"train": (images, labels)}, info=info)
    return root


def _train(root: Path, out: Path, exclude: bool) -> list:
    data = tiny_cfg(root, out, "nnclr", max_steps=12, log_every=1, ckpt_every=100)
    data["support_set"] = {"size": N, "exclude_same_image": exclude}
    medssl.pretrain(load_pretrain_config(data=data), progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "nn_same_image" in r]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_exclusion_keeps_every_look_up_off_the_query_image(small_sample: Path, tmp_path: Path) -> None:
    on = _train(small_sample, tmp_path / "on", True)
    off = _train(small_sample, tmp_path / "off", False)
    late = lambda rows: [r for r in rows if r["step"] > 5]  # noqa: E731 - from the second epoch on
    assert on and all(r["nn_same_image"] == 0.0 for r in on)
    assert max(r["nn_same_image_excluded"] for r in late(on)) > 0  # there was something to exclude
    assert max(r["nn_same_image"] for r in late(off)) > 0
    assert all("nn_same_image_excluded" not in r for r in off)
    assert load_yaml(tmp_path / "on" / "config.yaml")["support_set"]["exclude_same_image"] is True


def test_same_slide_exclusion_needs_slides(sample_dir: Path, tmp_path: Path) -> None:
    data = tiny_cfg(sample_dir, tmp_path / "s", "nnclr")
    data["support_set"] = {"size": 64, "exclude_same_slide": True}
    with pytest.raises(ConfigError, match="exclude_same_slide.*no slides"):
        medssl.pretrain(load_pretrain_config(data=data), progress=False)


def test_exclusion_keys_are_booleans(sample_dir: Path, tmp_path: Path) -> None:
    data = tiny_cfg(sample_dir, tmp_path / "b", "nnclr")
    data["support_set"] = {"size": 64, "exclude_same_image": "sometimes"}
    with pytest.raises(ConfigError, match="exclude_same_image"):
        load_pretrain_config(data=data)
