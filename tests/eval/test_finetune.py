"""Fine-tuning: preset choice, determinism, the encoder left untouched, LP-FT head init."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medssl.augment.presets import build_augmentation
from medssl.errors import ConfigError, EvaluationError
from medssl.eval.finetune import _Head, _probe_init, finetune, pick_preset
from medssl.eval.linear import fit_linear
from medssl.models.export import load_encoder

from .transfer_helpers import export_tiny, ihc


def test_pick_preset_by_data() -> None:
    assert pick_preset({"dataset": "PCAM"}, 3) == "histo"
    assert pick_preset({"dataset": "MedMNISTDataset", "flag": "pathmnist"}, 3) == "histo"
    assert pick_preset({"dataset": "MedMNISTDataset", "flag": "breastmnist"}, 1) == "gray"
    assert pick_preset({"dataset": "STL10"}, 3) == "natural"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path):
    from medssl.data import open_dataset

    model, preprocess = load_encoder(export_tiny(tmp_path_factory.mktemp("ft")))
    train = open_dataset(ihc(sample_dir), split="train")
    test = [open_dataset(ihc(sample_dir), split="test")[i] for i in range(0, 195, 5)]
    aug = build_augmentation({"name": "histo", "mean": (0.5,) * 3, "std": (0.25,) * 3}, 28)
    return model, preprocess, train, test, aug


def _run(setup, seed: int = 0, **kw):
    model, preprocess, train, test, aug = setup
    idx = np.concatenate([np.flatnonzero(train.labels() == c)[:8] for c in range(3)])
    return finetune(model, train, idx, test, preprocess, task="multiclass", num_classes=3, augment=aug,
                    epochs=2, batch_size=8, seed=seed, **kw)


def test_finetune_is_seeded_and_leaves_the_encoder_alone(setup) -> None:
    model = setup[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b = _run(setup), _run(setup)
    assert np.array_equal(a.scores, b.scores) and a.losses == b.losses
    assert a.scores.shape == (39, 3) and np.allclose(a.scores.sum(1), 1.0)
    assert a.embeddings.shape == (39, model.num_features) and len(a.losses) == 2
    assert a.protocol["head_init"] == "probe" and a.protocol["n_train"] == 24
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not np.array_equal(_run(setup, seed=1).scores, a.scores)


def test_probe_head_init_reproduces_the_linear_probe(setup) -> None:
    model, preprocess, train, _, _ = setup
    idx = np.arange(0, 540, 9)
    head = _Head(model, model.num_features, 3)
    _probe_init(head, train, idx, preprocess, "multiclass", 3, 1e-3, 64, torch.device("cpu"))
    x = torch.stack([preprocess(train[int(i)][0]) for i in idx])
    with torch.no_grad():
        feats = model(x)
        got = head.head(feats).numpy()
    probe = fit_linear(feats.numpy(), train.labels()[idx], "multiclass", 3, 1e-3)
    assert np.allclose(got, probe.logits(feats.numpy()), atol=1e-3)


def test_bad_arguments(setup) -> None:
    with pytest.raises(ConfigError, match="head_init"):
        _run(setup, head_init="random")
    model, preprocess, train, test, aug = setup
    with pytest.raises(EvaluationError, match="empty"):
        finetune(model, train, [], test, preprocess, task="multiclass", num_classes=3, augment=aug)


def test_progress_shows_the_seed_the_epoch_and_the_loss(setup, capsys: pytest.CaptureFixture[str]) -> None:
    res = _run(setup, seed=4, progress=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    # 24 images in batches of 8 for 2 epochs: 6 batches
    assert line.startswith("medssl: fine-tune seed 4: 6/6 batch (100 %), done in ")
    assert line.endswith(f"epoch=2/2, loss={res.losses[-1]:.4f}")
    _run(setup)
    assert capsys.readouterr().err == ""
