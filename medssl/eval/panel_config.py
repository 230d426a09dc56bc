"""The label-efficiency panel's part of the transfer config: its points and targets.

A panel scores every target at every *point* of its label axis: a label fraction
(``label_fractions``, in (0, 1]) or a count per class (``labels_per_class``, >= 1). Points
are the fractions then the counts, each list in the order given; when neither list is
set, the single ``label_fraction`` is the panel's one point. Targets are ``targets`` (or
``data`` alone), each a dataset path or mapping scored train split -> test split on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Sequence

from medssl.errors import ConfigError


@dataclass(frozen=True)
class Point:
    """One point of the label axis: ``kind`` ``fraction`` (``value`` in (0, 1]) or
    ``per_class`` (``value`` labelled images per class)."""

    kind: str
    value: float

    @property
    def label(self) -> str:
        """``"10 %"`` or ``"5 per class"`` (report rows, predictions.csv)."""
        return f"{100 * self.value:g} %" if self.kind == "fraction" else f"{int(self.value)} per class"


def _no_repeats(key: str, values: Sequence[Any]) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{key}: {v!r} is given twice; give each value once (got {list(values)})")
        seen.add(v)


def check_panel_keys(cfg: Any) -> None:
    """Refuse panel settings that cannot mean what they say (ConfigError naming the key)."""
    for i, f in enumerate(cfg.label_fractions):
        if not 0.0 < f <= 1.0:
            raise ConfigError(f"label_fractions[{i}] = {f!r} must be in (0, 1] (use 0.02 for 2 % of the labels)")
    _no_repeats("label_fractions (--label-fraction)", cfg.label_fractions)
    for i, k in enumerate(cfg.labels_per_class):
        if k < 1:
            raise ConfigError(f"labels_per_class[{i}] = {k!r} must be a whole number >= 1")
    _no_repeats("labels_per_class (--labels-per-class)", cfg.labels_per_class)
    _no_repeats("baselines (--baseline)", cfg.baselines)
    if not cfg.is_panel():
        return
    if len(cfg.targets) > 1 and cfg.test_data is not None:
        raise ConfigError("test_data (--test-data) goes with one target only; with several targets each is "
                          "scored on its own split_test")
    if cfg.protocol == "finetune":
        raise ConfigError("protocol finetune is not run as a panel (each point would fine-tune the encoder "
                          "again): use protocol linear or knn, or one --label-fraction per fine-tuning call")


def panel_points(cfg: Any) -> List[Point]:
    """The label axis of ``cfg``; see the module docstring."""
    pts = [Point("fraction", float(f)) for f in cfg.label_fractions]
    pts += [Point("per_class", float(int(k))) for k in cfg.labels_per_class]
    return pts or [Point("fraction", float(cfg.label_fraction))]


def target_specs(cfg: Any) -> List[Any]:
    """The panel's targets: ``targets``, else ``data`` alone."""
    return list(cfg.targets) or [cfg.data]


def target_name(spec: Any) -> str:
    """A short name of a target for rows, folders and figure titles (file stem or dataset name)."""
    if isinstance(spec, Mapping):
        where = spec.get("path") or spec.get("root") or spec.get("csv")
        base = Path(str(where)).stem if where else str(spec.get("name", "target"))
    else:
        p = Path(str(spec))
        base = p.stem if p.suffix else p.name
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
    return safe or "target"


def unique_names(specs: Sequence[Any]) -> List[str]:
    """:func:`target_name` of each spec, with ``-2``, ``-3`` ... added to repeats."""
    out: List[str] = []
    for spec in specs:
        base, n = target_name(spec), 2
        name = base
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out.append(name)
    return out
