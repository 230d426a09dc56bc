"""`medssl transfer configs/transfer/sample_demo.yaml` through the CLI, for each protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from medssl.cli import main
from medssl.models.backbone import build_backbone
from medssl.models.export import export_encoder

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "transfer" / "sample_demo.yaml"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 px RGB encoder, like the pretraining demo's (which resizes 96 px PCAM tiles to 64)."""
    run = tmp_path_factory.mktemp("demo_run")
    torch.manual_seed(0)
    enc = build_backbone("test_resnet", image_size=64)
    export_encoder(enc, run / "encoder.safetensors", backbone="test_resnet", in_chans=3, image_size=64,
                   small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)
    return run


@pytest.mark.parametrize("protocol", ["linear", "knn", "finetune"])
def test_sample_demo_transfer(encoder: Path, sample_dir: Path, tmp_path: Path, protocol: str) -> None:
    out = tmp_path / protocol
    argv = ["transfer", str(DEMO), f"encoder={encoder}", f"data={sample_dir / 'medmnist' / 'ihcstain.npz'}",
            f"out={out}", f"protocol={protocol}", "seeds=2", "report.n_boot=100", "report.tsne_max_points=150",
            "finetune.epochs=2"]
    assert main(argv) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["protocol"]["name"] == protocol and rep["protocol"]["label_fraction"] == 0.1
    assert len(rep["per_seed"]) == 2 and all(r["metrics"]["n"] == 195 for r in rep["per_seed"])
    for key in ("auc", "accuracy", "balanced_accuracy", "macro_f1", "ece", "brier"):
        assert rep["aggregate"][key]["n"] == 2, key
    assert rep["protocol"]["text"] in (out / "report.md").read_text()
    md = (out / "report.md").read_text()
    assert "| Metric | Mean ± SD across seeds | 95 % CI of the mean (test-set bootstrap pooled over the 2 seeds) |" in md
    assert "| Accuracy | " in md and "| Seed | Labels used | AUC | AUC 95 % CI |" in md
    for name, size in (("roc", (600, 500)), ("confusion", None), ("reliability", (500, 600)), ("tsne", (600, 500))):
        png = out / f"{name}.png"
        assert png.stat().st_size > 5_000, name
        with Image.open(png) as im:
            assert size is None or im.size == size
    if protocol != "finetune":  # frozen features are cached and reused on a re-run
        cache = out / "features_train_train.npz"
        stamp = cache.stat().st_mtime_ns
        assert main(argv) == 0
        assert cache.stat().st_mtime_ns == stamp
        assert json.loads((out / "report.json").read_text())["feature_cache"] == {"train:train": True,
                                                                                 "test:test": True}
