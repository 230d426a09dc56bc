"""Augmentation: histopathology-safe presets, multi-view wrapper, batched on-device path.

Importing this package registers the presets ("histo", "natural", "gray", "eval") in
:data:`medssl.registry.AUGMENTATIONS`. See docs/augmentation.md.
"""

from medssl.augment.plan import AugmentPlan
from medssl.augment.presets import (
    EvalParams,
    GrayParams,
    HistoParams,
    NaturalParams,
    build_augmentation,
    resolve_params,
)
from medssl.augment.pipeline import Augment

__all__ = [
    "Augment",
    "AugmentPlan",
    "EvalParams",
    "GrayParams",
    "HistoParams",
    "NaturalParams",
    "build_augmentation",
    "resolve_params",
]
