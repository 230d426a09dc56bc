"""The transfer-evaluation config schema (``medssl transfer CONFIG`` or its flags).

Keys (docs/transfer.md documents each): ``encoder`` (run directory or
``encoder.safetensors``), ``data`` (dataset path or registry mapping), optional
``test_data`` (a separate labelled test set; default: ``data``), ``split_train`` /
``split_test``, ``protocol`` (``linear`` | ``knn`` | ``finetune``), ``label_fraction``
in (0, 1], ``min_per_class``, ``seeds`` (how many) and ``seed`` (the first), ``out``,
and the sections ``knn``, ``linear``, ``finetune``, ``report``. The label-efficiency panel
keys ``label_fractions``, ``labels_per_class``, ``targets`` and ``baselines`` (any of them
set makes the run a panel, :mod:`medssl.eval.panel`) are checked in
:mod:`medssl.eval.panel_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

from medssl.config import apply_overrides, check_range, check_seed, from_mapping, load_yaml, user_path
from medssl.errors import ConfigError

DataSpec = Union[str, Dict[str, Any]]


@dataclass
class KnnSection:
    """Weighted kNN on frozen features (docs/evaluation.md)."""

    k: int = 20
    temperature: float = 0.07

    def __post_init__(self) -> None:
        check_range("knn.k", self.k, lo=1)
        check_range("knn.temperature", self.temperature, lo=0.0, lo_open=True)


@dataclass
class LinearSection:
    """L-BFGS logistic regression on standardised frozen features."""

    weight_decay: Union[float, List[float], Literal["auto"]] = "auto"
    max_iter: int = 100

    def __post_init__(self) -> None:
        check_range("linear.max_iter", self.max_iter, lo=1)


@dataclass
class FinetuneSection:
    """Encoder + linear head trained end to end on the label subset (AdamW).

    ``augment``: ``auto`` picks ``histo`` for H&E-like data (PCAM, PathMNIST), ``gray``
    for 1-channel data, else ``natural``; or name a preset. ``augment_params`` override
    the preset's parameters. ``head_init``: ``probe`` starts the head from the linear
    probe of the frozen features (LP-FT), ``zero`` from zeros.
    """

    epochs: int = 5
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    augment: str = "auto"
    head_init: Literal["probe", "zero"] = "probe"
    probe_weight_decay: float = 1e-3
    augment_params: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range("finetune.epochs", self.epochs, lo=1)
        check_range("finetune.lr", self.lr, lo=0.0, lo_open=True)
        check_range("finetune.head_lr", self.head_lr, lo=0.0, lo_open=True)
        check_range("finetune.weight_decay", self.weight_decay, lo=0.0)
        check_range("finetune.batch_size", self.batch_size, lo=1)


@dataclass
class ReportSection:
    """Confidence intervals and plots."""

    n_boot: int = 1000
    plots: bool = True
    tsne: bool = True
    tsne_max_points: int = 2000

    def __post_init__(self) -> None:
        check_range("report.n_boot", self.n_boot, lo=1)
        check_range("report.tsne_max_points", self.tsne_max_points, lo=10)


@dataclass
class TransferConfig:
    """One transfer evaluation: an encoder, a labelled dataset and a protocol."""

    encoder: str
    data: DataSpec
    test_data: Optional[DataSpec] = None
    split_train: str = "train"
    split_test: str = "test"
    protocol: Literal["linear", "knn", "finetune"] = "linear"
    label_fraction: float = 1.0
    min_per_class: int = 1
    seeds: int = 3
    seed: int = 0
    out: str = "runs/transfer"
    batch_size: int = 256
    num_workers: Union[int, Literal["auto"]] = 0
    threads: Union[int, Literal["auto"]] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    allow_class_name_mismatch: bool = False
    allow_overlap: bool = False
    # label-efficiency panel (docs/transfer.md, "Label-efficiency panels")
    label_fractions: List[float] = field(default_factory=list)
    labels_per_class: List[int] = field(default_factory=list)
    targets: List[DataSpec] = field(default_factory=list)
    baselines: List[Literal["random", "pixels"]] = field(default_factory=list)
    knn: KnnSection = field(default_factory=KnnSection)
    linear: LinearSection = field(default_factory=LinearSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    report: ReportSection = field(default_factory=ReportSection)

    def __post_init__(self) -> None:
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(
                f"label_fraction must be in (0, 1], got {self.label_fraction!r} (use 0.02 for 2 % of the labels)"
            )
        check_range("min_per_class", self.min_per_class, lo=0)
        check_range("seeds", self.seeds, lo=1)
        check_seed("seed", self.seed, count=self.seeds)  # seeds seed .. seed + seeds - 1 are used
        self.encoder = user_path("encoder", self.encoder)
        self.out = user_path("out", self.out)
        if isinstance(self.data, str):
            self.data = user_path("data", self.data)
        if isinstance(self.test_data, str):
            self.test_data = user_path("test_data", self.test_data)
        check_range("batch_size", self.batch_size, lo=1)
        if self.num_workers != "auto":
            check_range("num_workers", self.num_workers, lo=0)
        if self.threads != "auto":
            check_range("threads", self.threads, lo=1)
        from medssl.eval.panel_config import check_panel_keys

        self.targets = [user_path(f"targets[{i}]", t) if isinstance(t, str) else t for i, t in enumerate(self.targets)]
        check_panel_keys(self)

    def is_panel(self) -> bool:
        """Several fractions / counts / targets or a baseline: run as a panel."""
        return bool(self.label_fractions or self.labels_per_class or self.targets or self.baselines)

    def train_spec(self) -> DataSpec:
        return self.data

    def test_spec(self) -> DataSpec:
        return self.data if self.test_data is None else self.test_data

    def seed_list(self) -> List[int]:
        return [self.seed + i for i in range(self.seeds)]


def load_transfer_config(
    path: Optional[Union[str, Path]] = None,
    data: Optional[Mapping[str, Any]] = None,
    overrides: Sequence[str] = (),
) -> TransferConfig:
    """A validated :class:`TransferConfig` from a YAML file and/or a mapping (the mapping's
    keys win over the file's), then ``key.sub=value`` overrides."""
    raw: Dict[str, Any] = load_yaml(path) if path is not None else {}
    raw.update(dict(data or {}))
    raw = apply_overrides(raw, overrides)
    # named here rather than by from_mapping's generic "missing key", because the user
    # may give these as flags as well as YAML keys
    if raw.get("data") is None and isinstance(raw.get("targets"), list) and raw["targets"]:
        raw["data"] = raw["targets"][0]  # a panel may name its data sets under targets: only
    missing = [k for k in ("encoder", "data") if raw.get(k) is None]
    if missing:
        where = f" (in {path})" if path is not None else ""
        raise ConfigError("no " + " and no ".join(missing) + " given: pass "
                          + " and ".join(f"--{k} PATH" for k in missing) + " or set "
                          + " and ".join(f"`{k}:`" for k in missing) + f" in the transfer YAML{where}")
    return from_mapping(TransferConfig, raw, source=str(path) if path is not None else None)
