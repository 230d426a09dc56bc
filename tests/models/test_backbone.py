"""Backbone factory: shapes, small-input stem, local weights, offline refusals."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from torch import nn

from medssl.errors import ConfigError, RegistryError
from medssl.models.backbone import build_backbone, load_backbone_weights


@pytest.mark.parametrize("size,chans", [(32, 1), (32, 3), (96, 1), (96, 3)])
def test_resnet18_pooled_features(size: int, chans: int) -> None:
    m = build_backbone("resnet18", in_chans=chans, image_size=size).eval()
    assert m.num_features == 512
    with torch.no_grad():
        out = m(torch.randn(2, chans, size, size))
    assert out.shape == (2, 512)
    small = size <= 64
    assert (m.conv1.kernel_size, m.conv1.stride) == (((3, 3), (1, 1)) if small else ((7, 7), (2, 2)))
    assert isinstance(m.maxpool, nn.Identity) == small
    assert m.conv1.in_channels == chans


def test_small_stem_on_deep_stem_resnet_and_explicit_flags() -> None:
    m = build_backbone("test_resnet", image_size=28)
    first = m.conv1[0]
    assert (first.kernel_size, first.stride) == ((3, 3), (1, 1))
    assert isinstance(m.maxpool, nn.Identity)
    assert m(torch.randn(2, 3, 28, 28)).shape == (2, m.num_features)
    kept = build_backbone("test_resnet", image_size=28, small_input_stem=False)
    assert kept.conv1[0].stride == (2, 2) and not isinstance(kept.maxpool, nn.Identity)
    forced = build_backbone("test_resnet", image_size=224, small_input_stem=True)
    assert forced.conv1[0].stride == (1, 1)
    assert build_backbone("test_resnet").conv1[0].stride == (2, 2)  # auto without size: unchanged


def test_non_resnet_small_input_warns_and_still_works() -> None:
    with pytest.warns(UserWarning, match="not ResNet-like"):
        m = build_backbone("test_vit", image_size=32)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, m.num_features)


def _trained_tiny(in_chans: int = 3) -> nn.Module:
    m = build_backbone("test_resnet", in_chans=in_chans, small_input_stem=False)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5)
    return m


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_load_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    src = _trained_tiny()
    path = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete file loads silently
        dst = build_backbone("test_resnet", small_input_stem=False, weights=str(path))
    _assert_same_weights(src, dst)


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model"])
def test_load_pth_with_wrappers_prefixes_and_classifier(tmp_path, wrap: str) -> None:
    src = _trained_tiny()
    sd = {"module.backbone." + k: v for k, v in src.state_dict().items()}
    sd["module.backbone.fc.weight"] = torch.zeros(10, src.num_features)  # ImageNet-style head
    sd["module.backbone.fc.bias"] = torch.zeros(10)
    obj = sd if wrap == "raw" else {wrap: sd, "epoch": 3}
    path = tmp_path / "enc.pth"
    torch.save(obj, path)
    dst = build_backbone("test_resnet", small_input_stem=False, weights=str(path))
    _assert_same_weights(src, dst)


def test_full_ssl_checkpoint_keeps_backbone_keys(tmp_path) -> None:
    src = _trained_tiny()
    sd = {"backbone." + k: v for k, v in src.state_dict().items()}
    sd["projector.net.0.weight"] = torch.zeros(4, 4)
    torch.save({"model": sd}, tmp_path / "ckpt.pt")
    dst = build_backbone("test_resnet", small_input_stem=False, weights=str(tmp_path / "ckpt.pt"))
    _assert_same_weights(src, dst)


def test_mismatched_weights_are_reported(tmp_path) -> None:
    src = _trained_tiny()
    sd = dict(src.state_dict())
    sd.pop("layer1.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.warns(UserWarning, match=r"missing in file.*layer1\.0\.conv1\.weight"):
        m = build_backbone("test_resnet", small_input_stem=False, weights=str(path))
    assert torch.equal(m.layer1[0].conv2.weight, src.layer1[0].conv2.weight)
    with pytest.warns(UserWarning):
        report = load_backbone_weights(m, path)
    assert report.missing == ["layer1.0.conv1.weight"] and report.unexpected == ["extra.weight"]
    with pytest.raises(ConfigError, match="unexpected in file.*extra.weight"):
        build_backbone("test_resnet", small_input_stem=False, weights=str(path), strict_weights=True)


def test_three_channel_weights_adapted_to_one_channel(tmp_path) -> None:
    src = _trained_tiny(3)
    torch.save(src.state_dict(), tmp_path / "rgb.pth")
    with pytest.warns(UserWarning, match="input channels adapted: conv1.0.weight"):
        m = build_backbone("test_resnet", in_chans=1, small_input_stem=False, weights=str(tmp_path / "rgb.pth"))
    assert m.conv1[0].weight.shape[1] == 1
    torch.testing.assert_close(m.layer1[0].conv1.weight, src.layer1[0].conv1.weight)


def test_missing_weights_file(tmp_path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ConfigError, match="nope.safetensors.*does not exist"):
        build_backbone("test_resnet", weights=str(missing))
    with pytest.raises(ConfigError, match="not a local file.*offline by design"):
        build_backbone("test_resnet", weights="timm/resnet18.a1_in1k")


def test_corrupt_weights_file(tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read backbone weights file .*bad.pth"):
        build_backbone("test_resnet", weights=str(bad))


def test_pretrained_and_hub_names_refused() -> None:
    with pytest.raises(ConfigError, match="pretrained=True .*offline by design"):
        build_backbone("resnet18", pretrained=True)
    with pytest.raises(ConfigError, match="model hub entry.*offline by design"):
        build_backbone("hf-hub:timm/resnet18.a1_in1k")
    with pytest.raises(ConfigError, match="pretrained tag .*'resnet18'"):
        build_backbone("resnet18.a1_in1k")


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(RegistryError, match="unknown timm backbone 'resnet19'.*resnet18"):
        build_backbone("resnet19")


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="small_input_stem must be"):
        build_backbone("test_resnet", small_input_stem="yes")
    with pytest.raises(ConfigError, match="bad option for timm backbone 'test_resnet'"):
        build_backbone("test_resnet", not_an_option=3)


def test_a_backbone_that_cannot_take_the_image_size_says_which_sizes_work() -> None:
    """A ViT with 16 px patches at 8 px fails when timm builds it, not at the first step;
    the error names sizes that passed a dry forward."""
    with pytest.raises(ConfigError, match=r"backbone 'test_vit' cannot take 8 px images \(.*patch size.*\); "
                                          r"it does work at 16, 32, 48 px"):
        build_backbone("test_vit", image_size=8)
    with pytest.raises(ConfigError, match=r"'test_vit' cannot take 28 px"):
        build_backbone("test_vit", image_size=28)


def test_the_dry_forward_changes_nothing() -> None:
    """The size check runs one zero image in eval mode: the weights, batch-norm statistics,
    training flag and global RNG are as if it had not run."""
    torch.manual_seed(0)
    m = build_backbone("test_resnet", image_size=28)
    after_build = torch.get_rng_state()
    torch.manual_seed(0)
    ref = timm.create_model("test_resnet", num_classes=0)
    from medssl.models.backbone import apply_small_input_stem

    apply_small_input_stem(ref)
    assert torch.equal(torch.get_rng_state(), after_build)
    assert m.training
    for (k, a), (_, b) in zip(m.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
