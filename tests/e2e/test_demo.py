"""The README's main job, through the CLI, on the embedded sample (shortened)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medssl.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert "medssl data sample sample_data && medssl pretrain configs/demo.yaml" in blocks[0]
    ci = (REPO / ".ci" / "run").read_text()
    test_cmd = blocks[1].split("&&")[-1].strip()
    assert test_cmd == "python -m pytest -q" and test_cmd in ci


def test_demo_config_runs_end_to_end(sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    rc = main(["pretrain", str(REPO / "configs" / "demo.yaml"), "--no-progress", f"--out-dir={out}",
               f"data.root={sample_dir / 'pcam'}", f"val_data.root={sample_dir / 'pcam'}",
               "train.epochs=1", "train.knn_every=3", "model.backbone=test_resnet", "train.num_workers=0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"run directory : {out}" in printed and "encoder.safetensors" in printed
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    knn = [r for r in rows if "knn_top1" in r]
    assert knn and 0.0 <= knn[-1]["knn_top1"] <= 1.0 and 0.0 <= knn[-1]["knn_auc"] <= 1.0
    assert (out / "monitor.png").stat().st_size > 5000
    # demo.yaml resumes: running it again re-exports instead of refusing the directory
    assert main(["pretrain", str(REPO / "configs" / "demo.yaml"), "--no-progress", f"--out-dir={out}",
                 f"data.root={sample_dir / 'pcam'}", f"val_data.root={sample_dir / 'pcam'}",
                 "train.epochs=1", "model.backbone=test_resnet", "train.num_workers=0"]) == 0
