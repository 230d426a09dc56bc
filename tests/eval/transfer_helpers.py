"""Shared helpers of the transfer tests: a tiny exported encoder and small datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from medssl.models.backbone import build_backbone
from medssl.models.export import export_encoder


def export_tiny(run_dir: Path, image_size: int = 28, in_chans: int = 3, seed: int = 0) -> Path:
    """A randomly initialised ``test_resnet`` exported like a pretraining run's encoder."""
    torch.manual_seed(seed)
    enc = build_backbone("test_resnet", in_chans=in_chans, image_size=image_size)
    export_encoder(enc, Path(run_dir) / "encoder.safetensors", backbone="test_resnet", in_chans=in_chans,
                   image_size=image_size, small_input_stem="auto", mean=[0.5] * in_chans, std=[0.25] * in_chans)
    return Path(run_dir)


def quick_cfg(encoder: Path, data: Any, out: Path, **extra: Any) -> Dict[str, Any]:
    """A fast transfer config mapping: 2 seeds, 50 bootstrap resamples, no t-SNE."""
    cfg: Dict[str, Any] = {"encoder": str(encoder), "data": data if isinstance(data, dict) else str(data),
                           "out": str(out), "seeds": 2, "label_fraction": 0.2, "device": "cpu",
                           "report": {"n_boot": 50, "tsne": False, "plots": False}}
    cfg.update(extra)
    return cfg


def ihc(sample_dir: Path) -> Path:
    return sample_dir / "medmnist" / "ihcstain.npz"


def gray_npz(sample_dir: Path, out: Path, drop_test_class: int = -1) -> Path:
    """A grayscale MedMNIST-layout npz made from the sample's real IHC tiles (luma), with
    class ``drop_test_class`` removed from the test split when >= 0."""
    from medssl.data.medmnist import write_medmnist_npz

    splits = {}
    with np.load(ihc(sample_dir)) as z:
        for split in ("train", "test"):
            images, labels = z[f"{split}_images"], z[f"{split}_labels"].reshape(-1)
            if split == "test" and drop_test_class >= 0:
                keep = labels != drop_test_class
                images, labels = images[keep], labels[keep]
            gray = (images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round()
            splits[split] = (gray.clip(0, 255).astype(np.uint8), labels)
    return write_medmnist_npz(out, splits, info={"task": "multiclass",
                                                 "class_names": ["background", "dab_negative", "dab_positive"]})
