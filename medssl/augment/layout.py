"""Which layout an image array given to the Python API has, decided without guessing.

medssl's datasets hand out HWC uint8 images; a clinical script may hold channel-first
arrays (as torch does) or RGBA PNGs. An array is read only when its layout is unambiguous:
``(H, W)``, ``(H, W, C)`` or ``(N, H, W(, C))`` with ``C`` 1, 3 or 4 (alpha dropped, as the
folder reader drops it). A channel-first array, or one whose first and last axes could
both be channels, is refused with the shapes accepted (a (3, 28, 28) image used to come
back as three gray images, an RGBA one as 28 "images" made of its rows).
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

from medssl.errors import ConfigError

CHANNELS = (1, 3, 4)
ACCEPTED = ("one image (H, W) or (H, W, C), a batch (N, H, W) or (N, H, W, C), or a list of images, "
            "with C = 1, 3 or 4 channels last (alpha is dropped)")


def _refuse(what: str, shape: Tuple[int, ...], why: str, fix: str = "") -> ConfigError:
    return ConfigError(f"{what}: an array of shape {shape} {why}; medssl accepts {ACCEPTED}{fix}")


def _drop_alpha(arr: np.ndarray) -> np.ndarray:
    return arr[..., :3] if arr.shape[-1] == 4 else arr


def _channels_last(shape: Tuple[int, ...], axis_first: int, what: str) -> None:
    """Refuse when the channel axis is not unambiguously the last one."""
    first, last = shape[axis_first] in CHANNELS, shape[-1] in CHANNELS
    if first and not last:
        raise _refuse(what, shape, "looks channel-first", f". Move the channels last: np.moveaxis(x, {axis_first}, -1)")
    if first and last:
        raise _refuse(what, shape, f"is ambiguous (axis {axis_first} and the last axis could both be channels)")


def one_image(arr: Any, what: str = "image") -> np.ndarray:
    """``arr`` as one ``(H, W)`` or ``(H, W, C)`` image (C 1 or 3), or a ConfigError."""
    a = np.asarray(arr)
    if a.ndim == 2:
        return a
    if a.ndim != 3:
        raise _refuse(what, a.shape, f"has {a.ndim} dimensions, not an image")
    _channels_last(a.shape, 0, what)
    if a.shape[-1] not in CHANNELS:
        raise _refuse(what, a.shape, "has no channel axis of 1, 3 or 4 last")
    return _drop_alpha(a)


def image_list(data: Any, what: str = "images") -> List[np.ndarray]:
    """The images of ``data`` -- one image, a batch array or a sequence of images -- as a
    list of ``(H, W)`` / ``(H, W, C)`` arrays; ConfigError for any layout that is not
    unambiguous."""
    if isinstance(data, np.ndarray) or hasattr(data, "__array__") and not isinstance(data, (list, tuple)):
        a = np.asarray(data)
        if a.ndim == 2:
            return [a]
        if a.ndim == 3:
            if a.shape[-1] in CHANNELS or a.shape[0] in CHANNELS:
                return [one_image(a, what)]
            return list(a)  # (N, H, W) gray images
        if a.ndim == 4:
            _channels_last(a.shape, 1, what)
            if a.shape[-1] not in CHANNELS:
                raise _refuse(what, a.shape, "has no channel axis of 1, 3 or 4 last")
            return list(_drop_alpha(a))
        raise _refuse(what, a.shape, f"has {a.ndim} dimensions")
    if isinstance(data, (list, tuple)):
        return [one_image(im, f"{what}[{i}]") for i, im in enumerate(data)]
    raise ConfigError(f"{what}: got a {type(data).__name__}; medssl accepts {ACCEPTED} (numpy arrays)")


__all__: Sequence[str] = ["one_image", "image_list", "ACCEPTED"]
