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


_EDITS = {"backbone": "resnet34", "in_chans": 1, "image_size": 64, "small_input_stem": False,
          "num_features": 2048, "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2], "objective": "simclr"}


@pytest.mark.parametrize("key", sorted(_EDITS))
def test_any_hand_edit_of_the_sidecar_is_refused_naming_both_values(tmp_path: Path, key: str) -> None:
    """The record inside the safetensors header is authoritative: a sidecar that differs on
    any key it shares (architecture, input size, normalisation, extras) is an error naming
    the key and both values, never a silently different encoder."""
    import json

    _, path = _export(tmp_path, 32)
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    before = meta[key]
    sidecar.write_text(json.dumps({**meta, key: _EDITS[key]}))
    with pytest.raises(ConfigError, match=rf"disagrees with the metadata stored inside .*{key}: "
                                          rf"{_EDITS[key]!r}.* in encoder\.json vs {before!r}".replace("[", r"\[")):
        load_encoder(tmp_path)
    sidecar.unlink()  # the weights file alone still loads, as exported
    assert load_encoder(tmp_path)[1].meta[key] == before


def test_a_sidecar_adding_keys_still_loads(tmp_path: Path) -> None:
    import json

    _, path = _export(tmp_path, 32)
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "note": "run 7, best val AUC"}))
    assert load_encoder(tmp_path)[1].meta["backbone"] == "resnet18"


def test_a_foreign_safetensors_needs_a_complete_sidecar(tmp_path: Path) -> None:
    import json

    enc = build_backbone("resnet18", image_size=32)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(tmp_path / "timm.safetensors"))
    meta = {"format": "medssl-encoder-v1", "backbone": "resnet18", "in_chans": 3, "image_size": 32,
            "small_input_stem": True, "mean": [0.5] * 3}
    (tmp_path / "timm.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"timm\.json: missing key\(s\) 'std'"):
        load_encoder(tmp_path / "timm.safetensors")
    (tmp_path / "timm.json").write_text(json.dumps({**meta, "std": [0.25] * 3, "in_chans": "three"}))
    with pytest.raises(ConfigError, match=r"timm\.json: invalid in_chans='three' \(a positive integer\)"):
        load_encoder(tmp_path / "timm.safetensors")
    (tmp_path / "timm.json").write_text(json.dumps({**meta, "std": [0.25] * 3}))
    model, _ = load_encoder(tmp_path / "timm.safetensors")
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(enc.eval()(x), model(x))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_never_exported(tmp_path: Path, bad: float) -> None:
    """A diverged run (e.g. a NaN learning rate) must not leave an encoder behind that
    evaluates to NaN everywhere."""
    from medssl.errors import MedSSLError

    enc = build_backbone("test_resnet", image_size=28)
    with torch.no_grad():
        enc.conv1[0].weight[0, 0, 0, 0] = bad
    with pytest.raises(MedSSLError, match=r"refused to export .*encoder\.safetensors: 1 of \d+ encoder tensors "
                                          r"hold NaN or infinity \(conv1\.0\.weight\); training diverged"):
        export_encoder(enc, tmp_path / "encoder.safetensors", backbone="test_resnet", in_chans=3, image_size=28,
                       small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)
    assert list(tmp_path.iterdir()) == []
