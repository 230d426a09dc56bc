"""The library API called the way a clinical script might call it wrongly.

Each misuse is a medssl error naming the argument, what was given and what is accepted,
or -- where the input is unambiguous -- simply works: a list of HWC images, an empty
batch giving an empty result, RGBA images losing their alpha.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import numpy as np
import pytest
import torch

import medssl
from medssl.errors import MedSSLError


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Any, Any]:
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    torch.manual_seed(0)
    net = build_backbone("test_resnet", in_chans=3, image_size=28, small_input_stem="auto")
    path = export_encoder(net, tmp_path_factory.mktemp("enc") / "encoder.safetensors", backbone="test_resnet",
                          in_chans=3, image_size=28, small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)
    return medssl.load_encoder(path)


def _images(n: int, c: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28, c), dtype=np.uint8)


def test_an_empty_list_or_batch_gives_an_empty_result(encoder: Tuple[Any, Any]) -> None:
    model, pre = encoder
    for empty in ([], np.zeros((0, 28, 28, 3), np.uint8)):
        feats, labels = medssl.embed(model, empty, pre)
        assert feats.shape == (0, model.num_features) and feats.dtype == np.float32 and labels.shape == (0,)
    assert tuple(pre([]).shape) == (0, 3, 28, 28)


def test_a_list_of_hwc_images_is_the_same_as_the_array(encoder: Tuple[Any, Any]) -> None:
    model, pre = encoder
    x = _images(5)
    a, _ = medssl.embed(model, x, pre, batch_size=2)
    b, _ = medssl.embed(model, list(x), pre, batch_size=3)
    assert np.allclose(a, b, atol=1e-5)


def test_rgba_drops_alpha_in_preprocess_and_embed(encoder: Tuple[Any, Any]) -> None:
    model, pre = encoder
    x = _images(3, 4)
    assert tuple(pre(x[0]).shape) == (3, 28, 28)
    assert torch.equal(pre(x[0]), pre(x[0][..., :3]))
    a, _ = medssl.embed(model, x, pre)
    b, _ = medssl.embed(model, x[..., :3].copy(), pre)
    assert np.allclose(a, b)


@pytest.mark.parametrize("bad, pattern", [
    (np.zeros((3, 28, 28), np.uint8), r"shape \(3, 28, 28\) looks channel-first.*np\.moveaxis\(x, 0, -1\)"),
    (np.zeros((1, 28, 28), np.uint8), r"looks channel-first"),
    (np.zeros((3, 28, 3), np.uint8), r"is ambiguous"),
    (np.zeros((2, 28, 28, 28), np.uint8), r"no channel axis"),
])
def test_preprocess_refuses_ambiguous_layouts_with_the_shapes_accepted(encoder: Tuple[Any, Any], bad: np.ndarray,
                                                                       pattern: str) -> None:
    _, pre = encoder
    with pytest.raises(MedSSLError, match=pattern):
        pre(bad)
    with pytest.raises(MedSSLError, match=r"medssl accepts one image \(H, W\) or \(H, W, C\)"):
        pre(bad)


@pytest.mark.parametrize("bad", [np.zeros((4, 3, 28, 28), np.uint8), [np.zeros((3, 28, 28), np.uint8)]])
def test_embed_refuses_channel_first_batches(encoder: Tuple[Any, Any], bad: Any) -> None:
    model, pre = encoder
    with pytest.raises(MedSSLError, match=r"embed\(data\).*looks channel-first"):
        medssl.embed(model, bad, pre)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
    ({"batch_size": -3}, r"batch_size must be a positive integer"),
    ({"indices": [0, 5]}, r"indices must be in \[0, 5\) for 5 images, got 0\.\.5"),
    ({"indices": [-1]}, r"indices must be in \[0, 5\)"),
    ({"indices": [0.5]}, r"indices must be a 1-D sequence of integers"),
])
def test_embed_arguments_out_of_range_are_our_error(encoder: Tuple[Any, Any], kwargs: dict, pattern: str) -> None:
    model, pre = encoder
    with pytest.raises(MedSSLError, match=pattern):
        medssl.embed(model, _images(5), pre, **kwargs)


def test_load_encoder_on_cuda_without_cuda_is_our_error(encoder: Tuple[Any, Any], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    net = build_backbone("test_resnet", in_chans=3, image_size=28, small_input_stem="auto")
    path = export_encoder(net, tmp_path / "encoder.safetensors", backbone="test_resnet", in_chans=3, image_size=28,
                          small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(MedSSLError, match=r"load_encoder\(device=\.\.\.\) is .*cuda.* but no CUDA device"):
            medssl.load_encoder(path, device=device)
    with pytest.raises(MedSSLError, match=r"load_encoder\(device=\.\.\.\) must be one of"):
        medssl.load_encoder(path, device="gpu")


def test_embed_given_a_path_says_to_open_it_first(encoder: Tuple[Any, Any], tmp_path: Path) -> None:
    model, pre = encoder
    with pytest.raises(MedSSLError, match=r"embed\(data\): got the path .*medssl\.open_dataset"):
        medssl.embed(model, str(tmp_path / "images"), pre)


def test_embed_on_cuda_without_cuda_is_our_error(encoder: Tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model, pre = encoder
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MedSSLError, match=r"embed\(device=\.\.\.\) is 'cuda' but no CUDA device"):
        medssl.embed(model, _images(2), pre, device=torch.device("cuda"))
    feats, _ = medssl.embed(model, _images(2), pre, device="cpu")  # a string names a device too
    assert feats.shape == (2, model.num_features)
