"""Frozen-encoder features: one array type out, progress named by stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medssl.data.open import open_dataset
from medssl.eval.features import embed
from medssl.models.export import load_encoder

from .transfer_helpers import export_tiny


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("feat_enc"))


def test_features_and_labels_are_both_numpy(encoder: Path, sample_dir: Path) -> None:
    model, preprocess = load_encoder(encoder)
    ds = open_dataset(sample_dir / "pcam", split="test")
    feats, labels = embed(model, ds, preprocess, batch_size=16)
    assert isinstance(feats, np.ndarray) and isinstance(labels, np.ndarray)
    assert feats.dtype == np.float32 and feats.shape == (len(ds), model.num_features)
    assert labels.tolist() == [int(np.asarray(ds[i][1]).reshape(-1)[0]) for i in range(len(ds))]
    with torch.no_grad():
        direct = model(preprocess(ds[5][0])[None]).numpy()
    np.testing.assert_allclose(feats[5], direct[0], rtol=1e-5, atol=1e-6)


def test_images_array_and_indices(encoder: Path, sample_dir: Path) -> None:
    model, preprocess = load_encoder(encoder)
    ds = open_dataset(sample_dir / "pcam", split="test")
    images = np.stack([ds[i][0] for i in range(6)])
    feats, labels = embed(model, images, preprocess)
    assert feats.shape[0] == 6 and labels.tolist() == [-1] * 6
    sub, _ = embed(model, ds, preprocess, indices=[4, 1])
    np.testing.assert_allclose(sub, feats[[4, 1]], rtol=1e-5, atol=1e-6)


def test_progress_names_the_stage(encoder: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, preprocess = load_encoder(encoder)
    ds = open_dataset(sample_dir / "pcam", split="test")
    embed(model, ds, preprocess, batch_size=16, progress=True, stage="embed test (test)")
    err = capsys.readouterr().err
    assert f"medssl: embed test (test): {len(ds)}/{len(ds)} img (100 %), done in" in err
    embed(model, ds, preprocess, batch_size=16)
    assert capsys.readouterr().err == ""  # quiet by default, as a library call should be


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cuda_embeds_a_cpu_encoder_on_the_gpu(encoder: Path, sample_dir: Path) -> None:
    model, preprocess = load_encoder(encoder)
    ds = open_dataset(sample_dir / "pcam", split="test")
    ref, _ = embed(model, ds, preprocess, batch_size=16)
    feats, _ = embed(model, ds, preprocess, batch_size=16, device=torch.device("cuda"))
    assert next(model.parameters()).is_cuda
    np.testing.assert_allclose(feats, ref, rtol=1e-3, atol=1e-3)  # TF32 convolutions on the GPU
