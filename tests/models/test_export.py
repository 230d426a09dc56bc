from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from medssl.errors import ConfigError
from medssl.models.backbone import build_backbone
from medssl.models.export import export_encoder, load_encoder


def _export(tmp_path: Path, image_size: int, in_chans: int = 3) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    enc = build_backbone("resnet18", in_chans=in_chans, image_size=image_size)
    path = export_encoder(enc, tmp_path / "encoder.safetensors", backbone="resnet18", in_chans=in_chans,
                          image_size=image_size, small_input_stem="auto", mean=[0.5] * in_chans,
                          std=[0.25] * in_chans, extra={"objective": "pnnclr"})
    return enc.eval(), path


@pytest.mark.parametrize("image_size", [32, 96])
def test_round_trip_gives_identical_features(tmp_path: Path, image_size: int) -> None:
    enc, path = _export(tmp_path, image_size)
    model, preprocess = load_encoder(tmp_path)  # the run directory works as well as the file
    x = torch.randn(2, 3, image_size, image_size)
    assert torch.equal(enc(x), model(x))
    assert preprocess.meta["small_input_stem"] is (image_size <= 64)
    assert preprocess.meta["objective"] == "pnnclr"


def test_preprocess_resizes_normalises_and_adapts_channels(tmp_path: Path) -> None:
    _export(tmp_path, 32)
    _, preprocess = load_encoder(tmp_path / "encoder.safetensors")
    img = np.full((40, 40, 3), 255, np.uint8)
    x = preprocess(img)
    assert x.shape == (3, 32, 32) and torch.allclose(x, torch.full_like(x, (1.0 - 0.5) / 0.25))
    gray = np.full((28, 28, 1), 0, np.uint8)
    xb = preprocess([gray, gray])
    assert xb.shape == (2, 3, 32, 32) and torch.allclose(xb, torch.full_like(xb, -2.0))


def test_plain_timm_loads_an_encoder_without_small_stem(tmp_path: Path) -> None:
    enc, path = _export(tmp_path, 96)
    model = timm.create_model("resnet18", num_classes=0, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 96, 96)
    assert torch.equal(enc(x), model(x))


def test_metadata_embedded_when_sidecar_is_lost(tmp_path: Path) -> None:
    enc, path = _export(tmp_path, 96)
    path.with_suffix(".json").unlink()
    model, _ = load_encoder(path)
    x = torch.randn(1, 3, 96, 96)
    assert torch.equal(enc(x), model(x))


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encoder file .*not found"):
        load_encoder(tmp_path)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="has no medssl metadata"):
        load_encoder(tmp_path / "other.safetensors")
