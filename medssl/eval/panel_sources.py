"""What a panel probes: the encoder and its baselines, each a source of frozen features.

* ``encoder`` -- the exported encoder under evaluation;
* ``random`` -- the same architecture, randomly initialised (seeded by ``cfg.seed``),
  with the encoder's preprocessing: what the architecture gives without pretraining;
* ``pixels`` -- no network: raw downsampled pixels and a colour histogram
  (:mod:`medssl.eval.pixels`).

Each source has a ``key`` (a sha256) that enters the feature-cache fingerprint, so a
cache file is reused only for the same source, data and split (:mod:`medssl.eval.cache`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from medssl.eval.cache import cached_features, fingerprint, load_cached

Features = Tuple[np.ndarray, np.ndarray]


@dataclass
class FeatureSource:
    """One row group of the panel: ``name`` (``encoder`` / ``random`` / ``pixels``), a
    human ``title``, the cache ``key``, its provenance and how it embeds a dataset."""

    name: str
    title: str
    key: str
    provenance: Dict[str, Any]
    embed: Callable[[Any, str, bool], Features]


def _weights_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _network_embed(model: torch.nn.Module, preprocess: Any, cfg: Any, device: torch.device
                   ) -> Callable[[Any, str, bool], Features]:
    from medssl.eval.features import embed

    def run(ds: Any, stage: str, progress: bool) -> Features:
        return embed(model, ds, preprocess, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                     device=device, progress=progress, stage=stage)

    return run


def _pixel_embed(ds: Any, stage: str, progress: bool) -> Features:
    from medssl.eval.pixels import pixel_features

    return pixel_features(ds, progress=progress, stage=stage), np.array(ds.labels())  # a copy: may be read-only


def random_encoder(meta: Dict[str, Any], seed: int, device: torch.device) -> torch.nn.Module:
    """The encoder's architecture (``encoder.json`` ``meta``) with seeded random weights."""
    from medssl.models.backbone import build_backbone

    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
        torch.manual_seed(seed)
        model = build_backbone(meta["backbone"], in_chans=meta["in_chans"], image_size=meta["image_size"],
                               small_input_stem=meta["small_input_stem"])
    return model.to(device).eval()


def build_sources(cfg: Any, model: torch.nn.Module, preprocess: Any, enc_prov: Dict[str, Any],
                  device: torch.device) -> List[FeatureSource]:
    """The encoder first, then the baselines of ``cfg.baselines`` in the order given."""
    meta = preprocess.meta
    sources = [FeatureSource("encoder", f"encoder ({meta['backbone']}, {enc_prov['sha256'][:8]})",
                             enc_prov["sha256"], {"kind": "exported encoder", **enc_prov},
                             _network_embed(model, preprocess, cfg, device))]
    for name in cfg.baselines:
        if name == "random":
            rnd = random_encoder(meta, cfg.seed, device)
            key = _weights_sha256(rnd)
            sources.append(FeatureSource(
                "random", f"random init ({meta['backbone']})", key,
                {"kind": "random-init encoder", "backbone": meta["backbone"], "seed": cfg.seed,
                 "weights_sha256": key, "preprocess": "the encoder's"},
                _network_embed(rnd, preprocess, cfg, device)))
        else:
            from medssl.eval.pixels import HIST_BINS, POOL_SIZE

            desc = f"pixels:{POOL_SIZE}x{POOL_SIZE}-area+hist{HIST_BINS}:v1"
            sources.append(FeatureSource(
                "pixels", "pixels + colour histogram", hashlib.sha256(desc.encode()).hexdigest(),
                {"kind": "no network", "features": f"each channel area-averaged to {POOL_SIZE}x{POOL_SIZE} "
                 f"pixels, plus a {HIST_BINS}-bin histogram, mean and sd per channel"}, _pixel_embed))
    return sources


@dataclass
class FeatureStore:
    """Features of (source, data, split), computed once per call: kept in memory, and on
    disk under the panel's ``out`` (an older single-fraction cache in ``legacy`` is read)."""

    memory: Dict[str, Features] = field(default_factory=dict)
    hits: Dict[str, str] = field(default_factory=dict)

    def get(self, source: FeatureSource, data_prov: Dict[str, Any], split: str, path: Path, ds: Any,
            stage: str, progress: bool, legacy: Optional[Path] = None) -> Features:
        key = fingerprint(source.key, data_prov, split)
        label = f"{path.parent.name}/{path.name}"
        if key in self.memory:
            self.hits[label] = "memory"
            return self.memory[key]
        old = load_cached(legacy, key) if legacy is not None else None
        if old is not None:
            feats, labels, how = old[0], old[1], f"disk ({legacy.name})"
        else:
            feats, labels, hit = cached_features(path, key, lambda: source.embed(ds, stage, progress))
            how = "disk" if hit else "computed"
        self.memory[key] = (feats, labels)
        self.hits[label] = how
        return feats, labels
