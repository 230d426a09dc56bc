"""Plumbing shared by the objective modules: config checks, selector composition,
cold-start look-ups, seeded generators and neighbour diagnostics.

Pure tensor maths lives in :mod:`medssl.objectives.functional`; this module is the
thin layer between a config mapping and those functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from medssl.config import check_choice as config_check_choice
from medssl.config import check_range
from medssl.errors import ConfigError
from medssl.registry import NEIGHBOURS

if TYPE_CHECKING:  # pragma: no cover
    from medssl.objectives.neighbours import Neighbours
    from medssl.objectives.support_set import SupportSet

SelectorSpec = Union[None, str, Mapping[str, Any]]


# ----------------------------------------------------------------------------- config checks
# Thin wrappers: each names the objective, then defers to the one range / choice checker
# of medssl.config (which also refuses NaN and infinities).
def _label(objective: str, name: str) -> str:
    return f"objective {objective!r}: {name}"


def check_positive(objective: str, name: str, value: Any) -> float:
    """``value`` as a finite float > 0, else :class:`ConfigError` naming ``name`` and ``value``."""
    return check_range(_label(objective, name), value, lo=0, lo_open=True)


def check_between(objective: str, name: str, value: Any, lo: float, hi: Optional[float]) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``hi=None``: no upper bound), else :class:`ConfigError`."""
    return check_range(_label(objective, name), value, lo=lo, hi=hi)


def check_int(objective: str, name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, else :class:`ConfigError`."""
    return check_range(_label(objective, name), value, lo=minimum, integer=True)


def check_choice(objective: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else :class:`ConfigError` listing them."""
    return str(config_check_choice(_label(objective, name), value, choices))


def check_bool(objective: str, name: str, value: Any) -> bool:
    """``value`` if it is a bool (YAML ``true``/``false``), else :class:`ConfigError`."""
    if not isinstance(value, bool):
        raise ConfigError(f"{_label(objective, name)} must be true or false, got {value!r}")
    return value


# ----------------------------------------------------------------------------- selectors
def resolve_selector(
    objective: str, spec: SelectorSpec, default: str, defaults: Mapping[str, Mapping[str, Any]]
) -> Any:
    """Build the neighbour selector an objective uses.

    Args:
        objective: the objective's name (for error messages).
        spec: ``None`` (use ``default``), a selector name (``"nn"``, ``"pnn"``, ``"topk"``)
            or a mapping ``{"name": ..., **kwargs}``.
        default: the objective's own selector name.
        defaults: per selector name, the keyword arguments the objective fills in (e.g.
            SNCLR passes ``k=30`` to ``topk`` and ``pnn``); keys given in a mapping ``spec``
            override them.
    """
    from medssl.objectives.neighbours import build_selector

    name, given = (default, {}) if spec is None else NEIGHBOURS.split(spec, f"objective {objective!r}: neighbours")
    kwargs = {**dict(defaults.get(str(name).lower(), {})), **given}
    try:
        return build_selector(name, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"objective {objective!r}: bad options for neighbours {name!r}: {exc}") from exc


def selector_k(selector: Any) -> int:
    """How many support rows a selector needs per query (its ``k``; 1 for plain NN)."""
    return int(getattr(selector, "k", 1))


def look_up(
    selector: Any,
    query: Tensor,
    support: Optional["SupportSet"],
    *,
    training: bool,
    generator: Optional[torch.Generator],
    min_rows: int = 0,
    query_indices: Optional[Tensor] = None,
) -> Optional["Neighbours"]:
    """Neighbours of ``query`` ``[B, D]`` from ``support``, or ``None`` at cold start.

    Cold start = the support set holds fewer rows than the selector's ``k`` or than
    ``min_rows`` (a support-set warm-up); the caller then applies its documented fallback.
    ``query_indices [B]`` (dataset indices) let the support set exclude each query's own
    image (``SupportSet.exclude_same_image``).
    """
    if support is None or len(support) < max(selector_k(selector), min_rows):
        return None
    return selector(query, support, training=training, generator=generator, query_indices=query_indices)


def require_support(objective: str, support: Optional["SupportSet"]) -> "SupportSet":
    """``support``, or a :class:`ConfigError` saying the objective needs one."""
    if support is None:
        raise ConfigError(
            f"objective {objective!r} needs a support set (requirements.support_set) but got None; "
            "pass a medssl.objectives.support_set.SupportSet(size, dim) as the second argument"
        )
    return support


def require_views(objective: str, field: str, views: Optional[Sequence[Tensor]]) -> Sequence[Tensor]:
    """The two views of ``outputs.<field>``; a clear error when the model did not produce them."""
    if views is None or len(views) < 2:
        raise ConfigError(
            f"objective {objective!r} needs two views of outputs.{field}, got "
            f"{'None' if views is None else len(views)}; build the model with build_ssl_model(..., objective)"
        )
    return views


# ----------------------------------------------------------------------------- randomness
class SeededGenerators:
    """One ``torch.Generator`` per device, seeded with ``seed`` on first use.

    ``seed=None`` returns ``None`` (the global RNG, itself seeded by the run)."""

    def __init__(self, seed: Optional[int]) -> None:
        self.seed = seed
        self._gens: Dict[str, torch.Generator] = {}

    def get(self, device: torch.device, override: Optional[torch.Generator] = None) -> Optional[torch.Generator]:
        if override is not None:
            return override
        if self.seed is None:
            return None
        key = str(device)
        if key not in self._gens:
            self._gens[key] = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._gens[key]


# ----------------------------------------------------------------------------- diagnostics
def neighbour_stats(
    rows: Tensor,
    support: "SupportSet",
    labels: Optional[Tensor],
    indices: Optional[Tensor],
    weights: Optional[Tensor] = None,
    displaced: Optional[Tensor] = None,
) -> Dict[str, float]:
    """Neighbour purity / same-image fractions (when labels / indices are known)."""
    if labels is None and indices is None:
        return {}
    from medssl.objectives.neighbours import neighbour_diagnostics

    stats = neighbour_diagnostics(rows, support, labels, indices, weights=weights, displaced=displaced)
    return {k: float(v) for k, v in stats.items()}


def tile(x: Optional[Tensor], n: int) -> Optional[Tensor]:
    """Per-image metadata ``[B]`` repeated for ``n`` stacked query blocks (``None`` stays ``None``)."""
    return None if x is None else torch.cat([x] * n)
