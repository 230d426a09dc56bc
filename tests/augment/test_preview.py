"""`medssl augment preview` (medssl/augment/preview.py, commands.py) on the embedded sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.augment.preview import load_augment_spec, preview
from medssl.cli import main
from medssl.errors import ConfigError


def _png_shape(path: Path) -> tuple:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_cli_writes_a_grid_of_originals_and_views(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "views.png"
    rc = main(["augment", "preview", "histo", "--data", str(sample_dir / "pcam"), "--n", "2", "--views", "2", "--out", str(out), "--seed", "1"])
    assert rc == 0
    assert _png_shape(out) == (3 * 160, 2 * 160)  # original + 2 views by 2 images, 160 px a cell
    out2 = tmp_path / "wide.png"
    assert main(["augment", "preview", "histo", "--data", str(sample_dir / "pcam"), "--n", "3", "--views", "5", "--out", str(out2)]) == 0
    assert _png_shape(out2) == (6 * 160, 3 * 160)


def test_seeded_preview_repeats_and_seed_changes_it(sample_dir: Path, tmp_path: Path) -> None:
    paths = [preview("histo", str(sample_dir / "pcam"), tmp_path / f"{i}.png", n=2, n_views=2, seed=s) for i, s in enumerate((0, 0, 1))]
    data = [p.read_bytes() for p in paths]
    assert data[0] == data[1] and data[0] != data[2]


def test_yaml_config_with_asymmetric_views(sample_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "aug.yaml"
    cfg.write_text(
        "augment:\n  image_size: 64\n  device: auto\n  views:\n"
        "    - {name: histo, blur_p: 1.0, pcam_safe: true}\n    - {name: histo, blur_p: 0.1}\n    - {name: eval}\n"
    )
    spec, size = load_augment_spec(str(cfg))
    assert size == 64 and [v["name"] for v in spec] == ["histo", "histo", "eval"]
    out = preview(str(cfg), str(sample_dir / "pcam"), tmp_path / "v.png", n=2)
    assert out.is_file()


def test_gray_preview_on_medmnist(sample_dir: Path, tmp_path: Path) -> None:
    npz = sorted((sample_dir / "medmnist").glob("*.npz"))[0]
    out = preview("gray", str(npz), tmp_path / "g.png", n=2, n_views=2, image_size=28)
    assert out.is_file()


def test_bad_yaml_and_values_are_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("augment: [1, 2]\n")
    with pytest.raises(ConfigError, match="mapping under the key 'augment'"):
        load_augment_spec(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_augment_spec(str(tmp_path / "missing.yaml"))
    typo = tmp_path / "typo.yaml"
    typo.write_text("augment:\n  name: histo\n  hed_thta: 0.1\n")
    rc = main(["augment", "preview", str(typo), "--data", str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert rc == 2 and "unknown key 'hed_thta' in augmentation 'histo'. Did you mean 'hed_theta'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="must be positive"):
        preview("histo", str(tmp_path), tmp_path / "y.png", n=0)


def test_reads_a_pretraining_configs_augment_section(tmp_path: Path) -> None:
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text("augment:\n  preset: histo\n  image_size: 64\n  num_views: 3\n  device: batch\n"
                   "  params: {pcam_safe: true, hed_theta: strong}\n")
    spec, size = load_augment_spec(str(cfg))
    assert size == 64 and spec["name"] == "histo" and spec["pcam_safe"] is True and spec["hed_theta"] == "strong"
    cfg.write_text("augment:\n  preset: histo\n  parms: {pcam_safe: true}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'augment.parms' in .*pretrain.yaml\. Did you mean 'params'"):
        load_augment_spec(str(cfg))
