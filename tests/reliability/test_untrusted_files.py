"""Files from elsewhere: crafted pickles, YAML with Python tags, CSVs pointing outside
their root. Each is refused with a clear message, and no payload ever runs (the payload
would create a marker file)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator, List

import pytest
import torch

from medssl.errors import DataError, MedSSLError

from tests.reliability.harness import assert_clean_cli_error, run_cli, tiny_cfg, write_yaml


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: D105
        return (Path.touch, (Path(self.marker),))


def _evil_pickle(path: Path, marker: Path) -> Path:
    """A torch-format file whose state dict hides the payload among real tensors."""
    torch.save({"format": "medssl-pretrain-v1", "step": 1, "model": {"w": torch.zeros(2)},
                "payload": _Payload(marker)}, path)
    return path


@pytest.fixture()
def marker(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / "PAYLOAD_RAN"
    yield m
    assert not m.exists(), "code from an untrusted file was executed"


def _pretrain_args(sample: Path, tmp: Path, *overrides: str) -> List[str]:
    cfg = write_yaml(tmp / "cfg.yaml", tiny_cfg(sample, tmp / "run", "simclr", max_steps=1))
    return ["pretrain", str(cfg), "--no-progress", *overrides]


def test_malicious_checkpoint_given_to_resume_is_refused(sample_dir: Path, tmp_path: Path, marker: Path) -> None:
    evil = _evil_pickle(tmp_path / "evil.pt", marker)
    rc, _, err = run_cli(_pretrain_args(sample_dir, tmp_path, f"train.resume={evil}"))
    assert_clean_cli_error(rc, err, r"refused to load .*evil\.pt.*would run code from the file")


def test_malicious_checkpoint_planted_in_the_run_directory_is_refused(sample_dir: Path, tmp_path: Path,
                                                                      marker: Path) -> None:
    """`--resume` picks the newest step_*.pt: a planted one is refused, not executed."""
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    _evil_pickle(ckpts / "step_00000009.pt", marker)
    rc, _, err = run_cli(_pretrain_args(sample_dir, tmp_path, "--resume"))
    assert_clean_cli_error(rc, err, r"refused to load .*step_00000009\.pt")


def test_malicious_pth_weights_for_the_backbone_are_refused(sample_dir: Path, tmp_path: Path,
                                                           marker: Path) -> None:
    evil = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload(marker)}, evil)
    rc, _, err = run_cli(_pretrain_args(sample_dir, tmp_path, f"model.weights={evil}"))
    assert_clean_cli_error(rc, err, r"refused to load backbone weights file .*weights\.pth.*run code")


def _encoder_sidecar(path: Path) -> None:
    path.with_suffix(".json").write_text(json.dumps({
        "format": "medssl-encoder-v1", "backbone": "test_resnet", "in_chans": 3, "image_size": 28,
        "small_input_stem": False, "num_features": 0, "mean": [0.5] * 3, "std": [0.25] * 3}))


@pytest.mark.parametrize("name", ["encoder.safetensors", "encoder.pt"])
def test_pickle_posing_as_an_encoder_is_refused(tmp_path: Path, marker: Path, name: str) -> None:
    """A pickle under the encoder's name with a valid-looking sidecar: the API and the CLI
    refuse it (safetensors never unpickles; a .pt goes through weights_only)."""
    from medssl import load_encoder

    evil = _evil_pickle(tmp_path / name, marker)
    _encoder_sidecar(evil)
    with pytest.raises(MedSSLError, match=r"encoder\.(safetensors|pt)"):
        load_encoder(evil)
    rc, _, err = run_cli(["transfer", "--encoder", str(evil), "--data", str(tmp_path), "--out",
                          str(tmp_path / "out"), "--no-plots"])
    assert_clean_cli_error(rc, err, r"encoder\.(safetensors|pt)")


YAML_PAYLOADS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]",
    "!!python/name:os.system",
]


@pytest.mark.parametrize("payload", YAML_PAYLOADS)
def test_config_with_python_tags_is_refused(sample_dir: Path, tmp_path: Path, marker: Path, payload: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(write_yaml(tmp_path / "base.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr"))
                   .read_text() + f"seed: {payload.format(marker=marker)}\n")
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert_clean_cli_error(rc, err, r"cfg\.yaml")
    # the dataset loader's own YAML path and the transfer config are safe too
    rc, _, err = run_cli(["data", "info", str(cfg), "--no-checksum"])
    assert_clean_cli_error(rc, err, r"cfg\.yaml")
    transfer = tmp_path / "transfer.yaml"
    transfer.write_text(f"encoder: {payload.format(marker=marker)}\n")
    rc, _, err = run_cli(["transfer", str(transfer)])
    assert_clean_cli_error(rc, err, r"transfer\.yaml")


# ------------------------------------------------------------------ dataset roots
def _csv_dataset(sample: Path, tmp: Path, rows: List[str], **extra: object) -> dict:
    root = tmp / "ds"
    shutil.copytree(sample / "folder", root)
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return {"name": "folder", "csv": str(root / "labels.csv"), **extra}


def _outside_image(sample: Path, tmp: Path) -> Path:
    src = next((sample / "folder").rglob("*.png"))
    out = tmp / "elsewhere" / "secret.png"
    out.parent.mkdir()
    shutil.copy(src, out)
    return out


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_csv_paths_escaping_the_root_are_refused_unless_allowed(sample_dir: Path, tmp_path: Path, kind: str) -> None:
    from medssl.registry import DATASETS

    outside = _outside_image(sample_dir, tmp_path)
    cell = "../elsewhere/secret.png" if kind == "dotdot" else str(outside)
    cfg = _csv_dataset(sample_dir, tmp_path, [f"{cell},a", f"{cell},b"])
    with pytest.raises(DataError,
                       match=r"labels\.csv line 2: path .*secret\.png.* points outside .*allow_outside_root"):
        DATASETS.build(cfg)
    rc, _, err = run_cli(["data", "stats", str(write_yaml(tmp_path / "d.yaml", {"data": cfg}))])
    assert_clean_cli_error(rc, err, r"points outside")
    ds = DATASETS.build({**cfg, "allow_outside_root": True})
    assert len(ds) == 2 and ds[0][0].ndim == 3


def test_symlinks_inside_the_root_are_followed(sample_dir: Path, tmp_path: Path) -> None:
    """Documented choice: the root check is on the path as written (lexical), so a symlink
    the owner of the dataset folder placed there is followed (large datasets are often
    linked into place). Only `..` and absolute paths are treated as escapes."""
    from medssl.registry import DATASETS

    outside = _outside_image(sample_dir, tmp_path)
    cfg = _csv_dataset(sample_dir, tmp_path, ["link.png,a", "link.png,b"])
    os.symlink(outside, tmp_path / "ds" / "link.png")
    assert len(DATASETS.build(cfg)) == 2
