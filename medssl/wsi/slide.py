"""Open a whole-slide image and read RGB regions from it, whatever library can read it.

OpenSlide (``openslide-python`` with the ``openslide-bin`` wheel, no system library
needed) reads Aperio ``.svs``/``.tif``, Hamamatsu ``.ndpi``/``.vms``/``.vmu``, 3DHISTECH
``.mrxs``, Leica ``.scn``, Philips TIFF, Sakura ``.svslide``, Ventana ``.bif``, Zeiss
``.czi``, DICOM WSI and generic tiled TIFF. ``tiffslide`` (tifffile + zarr) is tried when
OpenSlide is not installed or refuses the file: it reads SVS, TIFF pyramids and untiled
(stripped) TIFF images, which OpenSlide refuses. Every failure becomes a
:class:`~medssl.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from medssl.errors import DataError
from medssl.text import looked_at

BACKENDS = ("openslide", "tiffslide")


@dataclass(frozen=True)
class SlideInfo:
    """What the tiler needs to know about a slide: its pyramid and its resolution."""

    path: str
    backend: str
    level_dimensions: Tuple[Tuple[int, int], ...]  # (width, height) per level, level 0 first
    level_downsamples: Tuple[float, ...]
    mpp: Optional[float]  # microns per pixel at level 0 (mean of x and y), None if unknown

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)


def _to_rgb(region: Any) -> np.ndarray:
    """A PIL RGBA region as (H, W, 3) uint8 RGB, transparent pixels (outside the scanned
    area, e.g. in .mrxs) composited onto white so they read as background, not tissue."""
    arr = np.asarray(region)
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.uint16)
        rgb = (arr[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha)) // 255
        return rgb.astype(np.uint8)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3], dtype=np.uint8)


def _mpp(props: Any, prefix: str) -> Optional[float]:
    vals: List[float] = []
    for axis in ("x", "y"):
        raw = props.get(f"{prefix}.mpp-{axis}")
        try:
            v = float(raw) if raw is not None else float("nan")
        except (TypeError, ValueError):
            v = float("nan")
        if np.isfinite(v) and v > 0:
            vals.append(v)
    return float(np.mean(vals)) if vals else None


class Slide:
    """An open slide: :attr:`info` plus :meth:`read` and :meth:`thumbnail` as numpy RGB."""

    def __init__(self, path: Path, handle: Any, backend: str) -> None:
        self.path = path
        self._handle = handle
        self.backend = backend
        props = handle.properties
        self.info = SlideInfo(
            path=str(path),
            backend=backend,
            level_dimensions=tuple((int(w), int(h)) for w, h in handle.level_dimensions),
            level_downsamples=tuple(float(d) for d in handle.level_downsamples),
            mpp=_mpp(props, backend),
        )
        if not self.info.level_dimensions or min(self.info.level_dimensions[0]) <= 0:
            raise DataError(f"{path}: the slide has no image (level 0 is {self.info.level_dimensions[:1]}); "
                            "check that it is a whole-slide image")

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """The region whose top-left corner is ``(x, y)`` in level-0 pixels, ``width`` x
        ``height`` pixels of ``level``, as (height, width, 3) uint8 RGB."""
        try:
            region = self._handle.read_region((int(x), int(y)), int(level), (int(width), int(height)))
        except Exception as exc:  # openslide / tifffile / zarr raise many types on bad data
            raise DataError(f"{self.path}: cannot read the region at ({x}, {y}) level {level} "
                            f"({type(exc).__name__}: {exc}); the slide is corrupt or truncated") from exc
        return _to_rgb(region)

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide scaled to fit ``max_side`` x ``max_side``, (h, w, 3) uint8 RGB."""
        try:
            img = self._handle.get_thumbnail((int(max_side), int(max_side)))
        except Exception as exc:
            raise DataError(f"{self.path}: cannot read a low-resolution image of the slide "
                            f"({type(exc).__name__}: {exc}); the slide is corrupt or truncated") from exc
        return _to_rgb(img.convert("RGBA") if img.mode not in ("RGB", "RGBA") else img)

    def close(self) -> None:
        try:
            self._handle.close()
        except Exception:
            pass

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _open_with(backend: str, path: Path) -> Any:
    if backend == "openslide":
        import openslide

        return openslide.OpenSlide(str(path))
    import tiffslide

    return tiffslide.TiffSlide(str(path))


def open_slide(path: Any, backends: Tuple[str, ...] = BACKENDS) -> Slide:
    """Open ``path`` with the first backend in ``backends`` that is installed and reads it.

    Raises :class:`DataError` naming the file when it is missing or no backend reads it.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such slide file (looked at {looked_at(p)})" if not p.exists()
                        else f"{p}: is not a file; pass slide files")
    reasons: List[str] = []
    for backend in backends:
        if backend not in BACKENDS:
            raise DataError(f"unknown slide backend {backend!r}; use one of {', '.join(BACKENDS)}")
        try:
            handle = _open_with(backend, p)
        except ImportError:
            reasons.append(f"{backend} not installed")
            continue
        except Exception as exc:  # each library has its own error types for unreadable files
            reasons.append(f"{backend}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "))
            continue
        try:
            return Slide(p, handle, backend)
        except DataError:
            handle.close()
            raise
        except Exception as exc:
            handle.close()
            reasons.append(f"{backend}: {type(exc).__name__}: {exc}")
    raise DataError(
        f"{p}: not a readable whole-slide image ({'; '.join(reasons)}). Check that the file is complete "
        "(not truncated by a copy) and in a format OpenSlide or tiffslide reads (see docs/data.md)"
    )
