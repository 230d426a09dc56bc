"""medssl: self-supervised pretraining of image encoders on medical images.

The public API (docs/api.md); heavy modules are imported on first use, so
``import medssl`` stays fast::

    import medssl
    model, preprocess = medssl.load_encoder("runs/demo")
    feats, labels = medssl.embed(model, dataset, preprocess)
"""

from __future__ import annotations

import importlib
from typing import Any

from medssl._version import __version__
from medssl.errors import ConfigError, DataError, MedSSLError, RegistryError

# public name -> (module, attribute); attribute None = the module itself
_LAZY = {
    "load_encoder": ("medssl.models.export", "load_encoder"),
    "export_encoder": ("medssl.models.export", "export_encoder"),
    "embed": ("medssl.eval.features", "embed"),
    "linear_probe": ("medssl.eval.linear", "linear_probe"),
    "knn_evaluate": ("medssl.eval.knn", "knn_evaluate"),
    "metrics": ("medssl.eval.metrics", None),
    "open_dataset": ("medssl.data.open", "open_dataset"),
    "build_backbone": ("medssl.models.backbone", "build_backbone"),
    "build_ssl_model": ("medssl.models.ssl_model", "build_ssl_model"),
    "build_augmentation": ("medssl.augment.presets", "build_augmentation"),
    "SupportSet": ("medssl.objectives.support_set", "SupportSet"),
    "load_pretrain_config": ("medssl.train.config", "load_pretrain_config"),
    "pretrain": ("medssl.train.loop", "pretrain"),
    "load_transfer_config": ("medssl.eval.config", "load_transfer_config"),
    "run_transfer": ("medssl.eval.transfer", "run_transfer"),
    "run_panel": ("medssl.eval.panel", "run_panel"),
    "compare_panels": ("medssl.eval.compare", "compare_panels"),
}

__all__ = ["__version__", "MedSSLError", "DataError", "ConfigError", "RegistryError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'medssl' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
