"""docs/api.md's example runs as written (on the embedded sample, with a tiny encoder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from medssl.models.backbone import build_backbone
from medssl.models.export import export_encoder

REPO = Path(__file__).resolve().parents[1]


def test_api_example_runs(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)\n```", (REPO / "docs" / "api.md").read_text(), flags=re.S)
    assert len(blocks) == 1 and "medssl.load_encoder" in blocks[0]
    (tmp_path / "sample_data").symlink_to(sample_dir, target_is_directory=True)
    torch.manual_seed(0)  # a stand-in for the demo run's encoder (64 px RGB, as configs/demo.yaml)
    enc = build_backbone("test_resnet", image_size=64)
    export_encoder(enc, tmp_path / "runs" / "demo" / "encoder.safetensors", backbone="test_resnet", in_chans=3,
                   image_size=64, small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/api.md", "exec"), {})
    out = capsys.readouterr().out
    assert "linear probe AUC" in out and "kNN (k=10)" in out
    assert (tmp_path / "runs" / "api_demo" / "report.md").is_file()
    assert (tmp_path / "runs" / "api_demo" / "tsne.png").stat().st_size > 5_000
