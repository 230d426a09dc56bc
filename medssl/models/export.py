"""Exported encoders: ``encoder.safetensors`` + ``encoder.json``, and loading them back.

The safetensors file holds the backbone's state dict with timm's own key names (so
``timm.create_model(name, num_classes=0, pretrained=True,
pretrained_cfg_overlay=dict(file=...))`` loads it when no small-input stem was used);
the JSON beside it records what is needed to rebuild and feed the encoder: backbone
name, stem, input size, channels and normalisation. Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from medssl.errors import ConfigError
from medssl.fileio import PathLike

FORMAT = "medssl-encoder-v1"


def export_encoder(
    encoder: nn.Module,
    path: PathLike,
    *,
    backbone: str,
    in_chans: int,
    image_size: int,
    small_input_stem: Union[bool, str],
    mean: Sequence[float],
    std: Sequence[float],
    extra: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar atomically; returns ``path``."""
    from safetensors.torch import save_file

    from medssl.fileio import atomic_write

    target = Path(path)
    applied = getattr(encoder, "small_input_stem_applied", None)
    meta: Dict[str, Any] = {
        "format": FORMAT,
        "backbone": backbone,
        "in_chans": int(in_chans),
        "image_size": int(image_size),
        "small_input_stem": bool(applied) if applied is not None else small_input_stem,
        "num_features": int(getattr(encoder, "num_features", 0)),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    atomic_write(target, lambda tmp: save_file(state, str(tmp), metadata={"medssl": json.dumps(meta)}))
    atomic_write(target.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    return target


def _resolve(path: PathLike) -> Tuple[Path, Dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        p = p / "encoder.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise ConfigError(
            f"encoder file {p} not found: pass a run directory holding encoder.safetensors, "
            "or the .safetensors file itself"
        )
    sidecar = p.with_suffix(".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text())
    else:  # the metadata is also embedded in the safetensors header
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("medssl")
        if raw is None:
            raise ConfigError(f"{p} has no medssl metadata and no {sidecar.name} beside it")
        meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{p}: unsupported encoder format {meta.get('format')!r}")
    return p, meta


def load_encoder(path: PathLike, device: Union[str, torch.device] = "cpu"
                 ) -> Tuple[nn.Module, Callable[[Any], torch.Tensor]]:
    """An exported encoder in eval mode, and its ``preprocess``.

    ``preprocess`` takes one HWC uint8 image (numpy, as medssl datasets return) or a list of
    them and returns a float tensor ``[C, S, S]`` / ``[N, C, S, S]`` resized to the
    training size and normalised as in training; grayscale inputs are repeated to 3
    channels when the encoder expects 3.
    """
    from medssl.augment.presets import build_augmentation
    from medssl.models.backbone import build_backbone

    p, meta = _resolve(path)
    model = build_backbone(meta["backbone"], in_chans=meta["in_chans"], image_size=meta["image_size"],
                           small_input_stem=meta["small_input_stem"], weights=str(p), strict_weights=True)
    model = model.to(device).eval()
    aug = build_augmentation({"name": "eval", "mean": tuple(meta["mean"]), "std": tuple(meta["std"]),
                              "out_channels": meta["in_chans"]}, meta["image_size"])

    def preprocess(images: Any) -> torch.Tensor:
        if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype == np.uint8 \
                and (images.ndim == 2 or images.shape[-1] in (1, 3)):
            return aug(images)
        return torch.stack([aug(np.asarray(im)) for im in images])

    preprocess.meta = meta  # type: ignore[attr-defined]
    return model, preprocess
