"""The pretraining config schema (``medssl pretrain CONFIG``).

Sections: ``data`` / ``val_data`` (dataset mappings for :data:`medssl.registry.DATASETS`),
``augment``, ``model``, ``objective`` (kwargs of the objective named by ``name``),
``support_set``, ``optim`` and ``train``. docs/configuration.md documents every key.
Mappings handed to a registry builder (``data``, ``objective``, ``augment.params``) are
checked against that builder's signature at load time, so a typo there is caught as early
as one in the fixed sections.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

from medssl.config import apply_overrides, check_range, check_seed, from_mapping, load_yaml, user_path
from medssl.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from medssl.augment.presets import PresetParams


@dataclass
class AugmentConfig:
    """Which augmentation preset makes the views, at what size, and where it runs."""

    preset: str = "histo"
    image_size: int = 96
    num_views: int = 2
    device: Literal["auto", "cpu", "cuda", "batch"] = "auto"
    params: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range("augment.image_size", self.image_size, lo=8)
        check_range("augment.num_views", self.num_views, lo=2)

    def resolve(self, source: Optional[str] = None) -> "PresetParams":
        """The validated parameters of ``preset`` with ``params`` applied: the one object the
        training views, the evaluation normalisation and the exported encoder all read.
        Errors name the key (``augment.params.X``) and ``source``."""
        from medssl.augment.presets import resolve_params
        from medssl.registry import AUGMENTATIONS

        spec = {**self.params, "name": self.preset}
        AUGMENTATIONS.check(spec, source, "augment.params")
        try:
            return resolve_params(spec)
        except ConfigError as exc:
            raise ConfigError(f"{source + ': ' if source else ''}augment: {exc}") from exc


@dataclass
class ModelConfig:
    """Backbone (any timm name), heads and offline weights."""

    backbone: str = "resnet18"
    small_input_stem: Union[bool, Literal["auto"]] = "auto"
    weights: Optional[str] = None
    partial_weights: bool = False  # accept model.weights that leave tensors unloaded (named in a warning)
    proj_hidden: int = 2048
    proj_dim: int = 256
    proj_layers: int = 3
    proj_last_bn: bool = True
    per_view_bn: bool = False
    predictor: Union[bool, Literal["auto"]] = "auto"
    pred_hidden: int = 4096
    sync_batchnorm: bool = False
    ema_base: float = 0.99

    def __post_init__(self) -> None:
        for key in ("proj_hidden", "proj_dim", "proj_layers", "pred_hidden"):
            check_range(f"model.{key}", getattr(self, key), lo=1)
        check_range("model.ema_base", self.ema_base, lo=0.0, hi=1.0)


@dataclass
class SupportSetConfig:
    """The memory queue shared by the nearest-neighbour objectives. ``exclude_same_image``
    (default on): a look-up never returns an older row of the query's own image;
    ``exclude_same_slide``: nor a row of the same slide (a data set with tiles of slides)."""

    size: int = 65536
    size_fraction: Optional[float] = None
    exclude_same_image: bool = True
    exclude_same_slide: bool = False

    def __post_init__(self) -> None:
        check_range("support_set.size", self.size, lo=1)
        if self.size_fraction is not None:
            check_range("support_set.size_fraction", self.size_fraction, lo=0.0, hi=1.0, lo_open=True)

    def rows_for(self, dataset_size: int) -> int:
        """The queue's rows for a training set of ``dataset_size`` images: ``size``, or
        ``size_fraction`` of the set (at least one row) when that is given."""
        if self.size_fraction is None:
            return self.size
        return max(1, int(round(self.size_fraction * dataset_size)))


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule: linear warm-up, then a cosine to
    ``lr * final_lr_ratio``. ``warmup_fraction`` gives the warm-up as a fraction of the run's
    steps (so ``train.max_steps=100`` on a long config still leaves warm-up); it excludes
    ``warmup_steps``."""

    name: Literal["adam", "adamw", "sgd", "lars"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    warmup_fraction: Optional[float] = None
    final_lr_ratio: float = 0.0
    grad_clip: Optional[float] = None

    def __post_init__(self) -> None:
        check_range("optim.lr", self.lr, lo=0.0, lo_open=True)
        check_range("optim.weight_decay", self.weight_decay, lo=0.0)
        check_range("optim.warmup_steps", self.warmup_steps, lo=0)
        if self.warmup_fraction is not None:
            check_range("optim.warmup_fraction", self.warmup_fraction, lo=0.0, hi=1.0, hi_open=True)
            if self.warmup_steps:
                raise ConfigError(
                    f"optim.warmup_steps={self.warmup_steps} and optim.warmup_fraction={self.warmup_fraction} "
                    "are both set; keep one (warmup_fraction scales with the run's length)"
                )
        check_range("optim.final_lr_ratio", self.final_lr_ratio, lo=0.0, hi=1.0)
        # torch checks these only when the optimiser is built (a ValueError traceback after
        # the data is loaded); a momentum of 1 or more never forgets and diverges.
        check_range("optim.momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True)
        for i, beta in enumerate(self.betas):
            check_range(f"optim.betas[{i}]", beta, lo=0.0, hi=1.0, hi_open=True)
        if self.grad_clip is not None:
            check_range("optim.grad_clip", self.grad_clip, lo=0.0, lo_open=True)

    def warmup_for(self, total_steps: int) -> int:
        """Warm-up steps of a run of ``total_steps`` steps."""
        if self.warmup_fraction is not None:
            return int(round(self.warmup_fraction * total_steps))
        return self.warmup_steps


@dataclass
class TrainConfig:
    """How long, how big, where, and how often to log / evaluate / checkpoint."""

    epochs: int = 100
    max_steps: Optional[int] = None
    batch_size: int = 256
    num_workers: Union[int, Literal["auto"]] = "auto"
    threads: Union[int, Literal["auto"]] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # YAML 1.1 reads a bare ``off`` / ``no`` as false: that is "off", not an error
    amp: Union[bool, Literal["auto", "off", "bf16", "fp16"]] = "auto"
    channels_last: bool = True
    compile: Union[bool, str] = False
    deterministic: bool = False
    log_every: int = 10
    ckpt_every: int = 500
    keep_last: int = 2
    export_steps: List[int] = field(default_factory=list)
    knn_every: int = 0
    knn_k: int = 20
    collapse_std: float = 1e-3
    collapse_patience: int = 50
    resume: Union[bool, Literal["auto"], str] = False
    gather_distributed: bool = True

    def __post_init__(self) -> None:
        if self.amp is False:
            self.amp = "off"
        elif self.amp is True:
            raise ConfigError("train.amp: true is not a precision; use auto, off, bf16 or fp16 "
                              "(auto: bf16 where it is faster, see docs/configuration.md)")
        check_range("train.epochs", self.epochs, lo=1)
        if self.max_steps is not None:
            check_range("train.max_steps", self.max_steps, lo=1)
        check_range("train.batch_size", self.batch_size, lo=2)
        if self.num_workers != "auto":
            check_range("train.num_workers", self.num_workers, lo=0)
        if self.threads != "auto":
            check_range("train.threads", self.threads, lo=1)
        for key in ("log_every", "ckpt_every", "keep_last", "knn_k", "collapse_patience"):
            check_range(f"train.{key}", getattr(self, key), lo=1)
        check_range("train.knn_every", self.knn_every, lo=0)
        for i, step in enumerate(self.export_steps):
            check_range(f"train.export_steps[{i}]", step, lo=1)
        check_range("train.collapse_std", self.collapse_std, lo=0.0)


@dataclass
class TrackingConfig:
    """Experiment tracking: off unless ``mlflow_uri`` is set (:mod:`medssl.tracking`)."""

    mlflow_uri: Optional[str] = None
    experiment: str = "medssl"
    run_name: Optional[str] = None  # default: the run directory's name


@dataclass
class PretrainConfig:
    """The whole pretraining run; ``data`` and ``objective`` have a required ``name``."""

    data: Dict[str, Any]
    objective: Dict[str, Any] = field(default_factory=lambda: {"name": "pnnclr"})
    val_data: Optional[Dict[str, Any]] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    support_set: SupportSetConfig = field(default_factory=SupportSetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    out_dir: str = "runs/medssl"
    recipe: Optional[str] = None  # a named set of defaults (medssl.train.recipes), filled in under the config

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)
        # Every path key means the same as in a shell: `~` expanded, an empty one refused.
        self.out_dir = user_path("out_dir", self.out_dir)
        if self.model.weights is not None:
            self.model.weights = user_path("model.weights", self.model.weights)
        if isinstance(self.train.resume, str) and self.train.resume != "auto":
            self.train.resume = user_path("train.resume", self.train.resume)


# Keys that moved: old dotted key -> new dotted key. A config using the old key still
# loads (the value moves over) and says so once per process.
MOVED_KEYS: Dict[str, str] = {
    "objective.ema_base": "model.ema_base",  # the EMA momentum is the model's, not the loss's
    "support_set.gather_distributed": "train.gather_distributed",  # it switches the loop's all-gather
}
_announced: set = set()


def move_deprecated_keys(raw: Dict[str, Any], source: Optional[str] = None) -> Dict[str, Any]:
    """``raw`` with every key of :data:`MOVED_KEYS` moved to its new place (a FutureWarning
    the first time each is seen). Both keys set to different values is a ConfigError."""
    for old, new in MOVED_KEYS.items():
        (old_sec, old_key), (new_sec, new_key) = old.split("."), new.split(".")
        section = raw.get(old_sec)
        if not isinstance(section, dict) or old_key not in section:
            continue
        where = f" in {source}" if source else ""
        target = raw.get(new_sec)
        target = dict(target) if isinstance(target, dict) else {}
        value = section[old_key]
        if new_key in target and target[new_key] != value:
            raise ConfigError(f"{old}{where} is the deprecated name of {new}, and the two disagree "
                              f"({value!r} vs {target[new_key]!r}); keep only {new}")
        raw = {**raw, old_sec: {k: v for k, v in section.items() if k != old_key}, new_sec: {**target, new_key: value}}
        if old not in _announced:
            _announced.add(old)
            warnings.warn(f"medssl: {old}{where} is deprecated and will be removed; write it as {new}",
                          FutureWarning, stacklevel=3)
    return raw


def load_pretrain_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = (),
                         data: Optional[Dict[str, Any]] = None) -> PretrainConfig:
    """Load and validate a pretraining config from a YAML file and/or a mapping, then apply
    dotted ``overrides`` (``train.epochs=5``), then fill in the keys its ``recipe`` sets
    that none of those set (:mod:`medssl.train.recipes`). Every error names the key and
    the file."""
    from medssl.registry import DATASETS, OBJECTIVES
    from medssl.train.recipes import apply_recipe

    raw: Dict[str, Any] = {}
    source = None
    if path is not None:
        raw = load_yaml(path)
        source = str(path)
    if data:
        raw = {**raw, **data}
    raw = apply_overrides(raw, list(overrides))
    raw = move_deprecated_keys(raw, source)
    raw = apply_recipe(raw, source)
    cfg = from_mapping(PretrainConfig, raw, source=source)
    DATASETS.check(cfg.data, source, "data")
    if cfg.val_data is not None:
        DATASETS.check(cfg.val_data, source, "val_data")
    OBJECTIVES.check(cfg.objective, source, "objective")
    # caught here rather than when the model is built, after the data has loaded
    from medssl.models.ssl_model import check_predictor_option

    try:
        check_predictor_option(cfg.model.predictor, OBJECTIVES.get(cfg.objective["name"]))
    except ConfigError as exc:
        raise ConfigError(f"{source + ': ' if source else ''}{exc}") from exc
    cfg.augment.resolve(source)
    return cfg


__all__: List[str] = [
    "AugmentConfig",
    "ModelConfig",
    "SupportSetConfig",
    "OptimConfig",
    "TrainConfig",
    "TrackingConfig",
    "PretrainConfig",
    "load_pretrain_config",
    "move_deprecated_keys",
]
