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


def _choice(monkeypatch: pytest.MonkeyPatch, dtype, calls: list) -> None:
    import medssl.eval.features as F
    from medssl.precision import PrecisionChoice

    def choose(model, step, shape):
        calls.append(dict(shape))
        step(model, dtype is not None)  # the probe's step runs: a forward of the real batch
        return PrecisionChoice(dtype, 2.0, 1.0, "cache")
    monkeypatch.setattr(F, "choose_cpu_precision", choose)


def test_bf16_features_are_float32_and_close_to_float32_ones(encoder: Path, sample_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("medssl.precision.cpu_has_native_bf16", lambda: True)
    model, preprocess = load_encoder(encoder)
    ds = open_dataset(sample_dir / "pcam", split="test")
    exact, _ = embed(model, ds, preprocess, batch_size=4, precision="off")
    half, _ = embed(model, ds, preprocess, batch_size=4, precision="bf16")
    assert half.dtype == np.float32 and not np.array_equal(half, exact)  # autocast did run
    scale = np.abs(exact).max()
    assert np.abs(half - exact).max() <= 0.05 * scale  # bf16 keeps ~3 significant digits


def test_auto_probes_only_data_sets_worth_probing(encoder: Path, sample_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import medssl.eval.features as F

    model, preprocess = load_encoder(encoder)
    ds = open_dataset(sample_dir / "pcam", split="test")
    exact, _ = embed(model, ds, preprocess, batch_size=4, precision="off")
    calls: list = []
    _choice(monkeypatch, torch.bfloat16, calls)
    # fewer than PROBE_MIN_BATCHES batches: float32 without a probe
    small, _ = embed(model, ds, preprocess, batch_size=len(ds) // (F.PROBE_MIN_BATCHES - 1) + 1)
    assert calls == [] and np.allclose(small, exact, atol=1e-6)
    batch = max(1, len(ds) // F.PROBE_MIN_BATCHES)
    probed, _ = embed(model, ds, preprocess, batch_size=batch)
    assert len(calls) == 1 and calls[0]["batch"] == batch and calls[0]["step"] == "embed"
    assert not np.array_equal(probed, exact)  # the probe's bf16 answer was used
    calls.clear()
    _choice(monkeypatch, None, calls)
    kept, _ = embed(model, ds, preprocess, batch_size=batch)
    assert len(calls) == 1 and np.allclose(kept, exact, atol=1e-6)


def test_an_unknown_precision_is_refused(encoder: Path, sample_dir: Path) -> None:
    from medssl.errors import ConfigError

    model, preprocess = load_encoder(encoder)
    ds = open_dataset(sample_dir / "pcam", split="test")
    with pytest.raises(ConfigError, match="precision must be auto, off or bf16, got 'fp8'"):
        embed(model, ds, preprocess, precision="fp8")
