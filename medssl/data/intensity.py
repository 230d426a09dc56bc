"""Intensity windows: physical values (Hounsfield units, MR signal) -> 0..255 uint8.

A *window* keeps the values between ``center - width / 2`` and ``center + width / 2`` and
maps them linearly onto 0..255 (DICOM PS3.3 C.11.2.1.2: functions ``LINEAR`` (the
default, with DICOM's half-unit offsets), ``LINEAR_EXACT`` and ``SIGMOID``).

A window spec (the ``window`` key of the ``dicom`` and ``nifti`` data sets) is one of:

* ``"auto"``: the file's own window (DICOM VOI LUT or WindowCenter / WindowWidth; see
  :mod:`medssl.data.dicom_pixels`), else ``"minmax"`` for DICOM / ``"percentile"`` for NIfTI;
* ``"minmax"``: the image's own minimum -> 0, maximum -> 255;
* ``"percentile"``: the volume's 0.5th -> 0 and 99.5th percentile -> 255;
* a named CT window from :data:`NAMED_WINDOWS` (``lung``, ``mediastinum``, ``soft_tissue``,
  ``bone``, ``brain``; Hounsfield units);
* ``{"center": C, "width": W}`` (optionally ``"function"``);
* ``"multi"`` or a list of three of the above: three windows stacked as the R, G, B
  channels (``"multi"`` = lung, mediastinum, bone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from medssl.errors import ConfigError

# (center, width) in Hounsfield units: the usual radiology reading windows.
NAMED_WINDOWS: dict[str, Tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
MULTI_WINDOW: Tuple[str, str, str] = ("lung", "mediastinum", "bone")
FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
AUTO_MODES = ("auto", "minmax", "percentile")
PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Window:
    """One window: ``center`` and ``width`` in the image's physical units."""

    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise ConfigError(f"window function must be one of {', '.join(FUNCTIONS)}, got {self.function!r}")
        least = 1.0 if self.function == "LINEAR" else 0.0
        if not np.isfinite(self.width) or self.width < least or (self.width == 0 and least == 0):
            raise ConfigError(f"window width must be {'>= 1' if least else '> 0'} for {self.function}, got {self.width}")


WindowSpec = Union[str, Window, Tuple[Union[str, Window], ...]]


def _one(spec: Any, where: str) -> Union[str, Window]:
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in NAMED_WINDOWS:
            c, w = NAMED_WINDOWS[key]
            return Window(c, w)
        if key in AUTO_MODES:
            return key
        raise ConfigError(f"{where}: unknown window {spec!r}; use one of {', '.join(AUTO_MODES + tuple(NAMED_WINDOWS))}, "
                          "'multi', {center: C, width: W} or a list of three windows")
    if isinstance(spec, Mapping):
        extra = set(spec) - {"center", "width", "function"}
        if extra or not {"center", "width"} <= set(spec):
            raise ConfigError(f"{where}: a window mapping needs exactly center and width (optional function), got keys {sorted(spec)}")
        try:
            center, width = float(spec["center"]), float(spec["width"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: window center and width must be numbers, got {dict(spec)}") from exc
        try:
            return Window(center, width, str(spec.get("function", "LINEAR")).upper())
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    raise ConfigError(f"{where}: a window is a name, a {{center, width}} mapping or a list of three, got {spec!r}")


def parse_window(spec: Any, where: str = "window") -> WindowSpec:
    """Check a config value and return a :data:`WindowSpec` (a mode name, a Window, or a triple)."""
    if isinstance(spec, str) and spec.strip().lower() == "multi":
        spec = list(MULTI_WINDOW)
    if isinstance(spec, (list, tuple)):
        if len(spec) != 3:
            raise ConfigError(f"{where}: a multi-window list needs exactly three windows (one per channel), got {len(spec)}")
        return tuple(_one(s, f"{where}[{i}]") for i, s in enumerate(spec))
    return _one(spec, where)


def window_channels(spec: WindowSpec) -> int:
    """3 for a multi-window spec, else 1."""
    return 3 if isinstance(spec, tuple) else 1


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """``values`` (any shape, physical units) -> uint8 through ``window`` (PS3.3 C.11.2.1.2)."""
    x = np.asarray(values, dtype=np.float64)
    c, w = window.center, window.width
    # Clipping the linear part to [0, 1] is exactly the standard's piecewise definition:
    # the line reaches 0 at c - 0.5 - (w - 1) / 2 and 1 at c - 0.5 + (w - 1) / 2 (LINEAR),
    # 0 at c - w / 2 and 1 at c + w / 2 (LINEAR_EXACT).
    if window.function == "LINEAR":
        y = (x - (c - 0.5)) / (w - 1.0) + 0.5 if w > 1 else (x > c - 0.5).astype(np.float64)
    elif window.function == "LINEAR_EXACT":
        y = (x - c) / w + 0.5
    else:  # SIGMOID
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    return _to_uint8(y)


def _to_uint8(y: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255; NaN (no value: outside a NIfTI mask, a float DICOM's gaps) -> 0."""
    return np.rint(np.nan_to_num(np.clip(y, 0.0, 1.0), nan=0.0) * 255.0).astype(np.uint8)


def scale_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``lo`` -> 0, ``hi`` -> 255, linear and clipped; a flat range (hi <= lo) gives 0."""
    x = np.asarray(values, dtype=np.float64)
    if not hi > lo:
        return np.zeros(x.shape, np.uint8)
    return _to_uint8((x - lo) / (hi - lo))


def minmax(values: np.ndarray) -> np.ndarray:
    """The image's own finite min -> 0, max -> 255 (NaN -> 0; no finite value: all 0)."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if not finite.size:
        return np.zeros(x.shape, np.uint8)
    return scale_range(x, float(finite.min()), float(finite.max()))


def percentile_range(values: np.ndarray, q: Sequence[float] = PERCENTILES) -> Tuple[float, float]:
    """The ``q`` percentiles of the finite values (``(0, 0)`` when none is finite)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return 0.0, 0.0
    lo, hi = np.percentile(x, q)
    return float(lo), float(hi)


def window_stack(values: np.ndarray, spec: WindowSpec, auto: Optional[Any] = None) -> np.ndarray:
    """HWC uint8 of a 2-D ``values`` image: one channel per window of ``spec``. ``auto``
    (a callable ``values -> uint8``) handles the mode names; ``None`` = :func:`minmax`."""
    parts = spec if isinstance(spec, tuple) else (spec,)
    out = []
    for part in parts:
        if isinstance(part, Window):
            out.append(apply_window(values, part))
        elif auto is not None:
            out.append(auto(values, part))
        else:
            out.append(minmax(values))
    return np.stack(out, axis=-1)
