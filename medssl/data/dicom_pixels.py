"""One DICOM frame -> an HWC uint8 image with the intensities a radiologist would see.

Grayscale (MONOCHROME1 / MONOCHROME2), in this order (DICOM PS3.4 N.2, the grayscale
pipeline):

1. stored values, decoded by pydicom (signed data by PixelRepresentation, the BitsStored
   low bits sign-extended);
2. modality LUT: ``value * RescaleSlope + RescaleIntercept`` (Hounsfield units for CT), or
   the ModalityLUTSequence when the file has one; enhanced multi-frame objects take each
   frame's values from its functional groups (:func:`frame_tags`);
3. VOI: the window spec (:mod:`medssl.data.intensity`). ``auto`` uses the file's
   VOILUTSequence (its output scaled by the LUT's bit depth), else its first
   WindowCenter / WindowWidth (with VOILUTFunction), else the frame's min / max;
4. MONOCHROME1 (minimum = white) is inverted: ``255 - y``.

Colour: RGB as stored; YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT are converted to RGB
(by pydicom, or by the JPEG decoder for compressed data); PALETTE COLOR goes through its
palette. More than 8 bits per sample are scaled: ``rint(x * 255 / (2**BitsStored - 1))``.
A window spec other than ``auto`` on a colour image is an error.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from medssl.data.intensity import Window, WindowSpec, minmax, window_stack
from medssl.errors import DataError

GRAY = ("MONOCHROME1", "MONOCHROME2")
# Enhanced multi-frame objects (CT, MR, PET) keep the rescale and window of each frame in
# functional groups: the per-frame item wins over the shared one, which wins over the top level.
FRAME_GROUPS = {"PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
                "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction")}
TOP_LEVEL = ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "WindowCenter", "WindowWidth",
             "VOILUTFunction", "VOILUTSequence", "PhotometricInterpretation", "BitsStored", "BitsAllocated",
             "PixelRepresentation")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")


def _first(value: Any) -> float:
    """A DS / IS element that may be multi-valued (``[40, 400]``): its first value."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0])
    return float(value)


def frame_tags(ds: Any, frame: Optional[int]) -> Any:
    """The intensity tags that hold for ``frame``: ``ds`` itself, or for an enhanced
    multi-frame object a small Dataset with the top-level tags overridden by the shared and
    then the per-frame functional groups (PS3.3 C.7.6.16)."""
    if "SharedFunctionalGroupsSequence" not in ds and "PerFrameFunctionalGroupsSequence" not in ds:
        return ds
    from pydicom.dataset import Dataset

    view = Dataset()
    for key in TOP_LEVEL:
        if key in ds:
            setattr(view, key, ds[key].value)
    k = frame or 0
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    for item in ([shared[0]] if len(shared) else []) + ([per_frame[k]] if k < len(per_frame) else []):
        for group, keys in FRAME_GROUPS.items():
            if item.get(group):
                for key in keys:
                    if key in item[group][0]:
                        setattr(view, key, item[group][0][key].value)
    return view


def modality_values(ds: Any, stored: np.ndarray) -> np.ndarray:
    """Stored values -> float64 physical values (step 2 of the module docstring)."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    slope = _first(ds.RescaleSlope) if ds.get("RescaleSlope") not in (None, "") else 1.0
    intercept = _first(ds.RescaleIntercept) if ds.get("RescaleIntercept") not in (None, "") else 0.0
    return stored.astype(np.float64) * slope + intercept


def file_window(ds: Any) -> Optional[Window]:
    """The first WindowCenter / WindowWidth of ``ds`` (with its VOILUTFunction), or None."""
    if ds.get("WindowCenter") in (None, "") or ds.get("WindowWidth") in (None, ""):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    width = _first(ds.WindowWidth)
    if width < (1.0 if function == "LINEAR" else 1e-12):
        return None  # a broken window in the file: fall back to min / max rather than fail
    known = function if function in ("LINEAR", "LINEAR_EXACT", "SIGMOID") else "LINEAR"
    return Window(_first(ds.WindowCenter), width, known)


def _voi_lut(ds: Any, values: np.ndarray) -> np.ndarray:
    """The file's first VOI LUT (pydicom's reading of its descriptor and data, US or OW)
    applied to modality ``values``, its output scaled by the LUT's bit depth to 0..255."""
    from pydicom.pixels import apply_voi

    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    out = np.asarray(apply_voi(np.rint(values).astype(np.int64), ds, index=0), dtype=np.float64)
    top = float(2 ** bits - 1) if bits > 0 else float(out.max() or 1.0)
    return np.rint(np.clip(out / top, 0.0, 1.0) * 255.0).astype(np.uint8)


def _auto(ds: Any) -> Any:
    def auto(values: np.ndarray, mode: str) -> np.ndarray:
        if mode == "auto":
            if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
                return _voi_lut(ds, values)
            w = file_window(ds)
            if w is not None:
                return window_stack(values, w)[..., 0]
        return minmax(values)

    return auto


def gray_image(ds: Any, stored: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """(H, W) stored grayscale values of ``ds`` -> (H, W, 1 or 3) uint8 (steps 2-4)."""
    values = modality_values(ds, stored)
    img = window_stack(values, spec, auto=_auto(ds))
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        img = 255 - img
    return img


def colour_image(ds: Any, decoded: np.ndarray, where: str) -> np.ndarray:
    """(H, W, 3) decoded colour samples -> (H, W, 3) uint8 RGB."""
    photometric = str(ds.PhotometricInterpretation).strip()
    arr = decoded
    bits = int(ds.get("BitsStored", 8) or 8)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(decoded, ds)
        bits = 8 if arr.dtype == np.uint8 else 16
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DataError(f"{where}: {photometric} pixels decoded to shape {arr.shape}, expected (rows, columns, 3)")
    if arr.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(arr)
    top = float(2 ** min(bits, 32) - 1)
    return np.rint(np.clip(arr.astype(np.float64) / top, 0.0, 1.0) * 255.0).astype(np.uint8)


def frame_image(ds: Any, frame: Optional[int], spec: WindowSpec, where: str) -> np.ndarray:
    """Decode frame ``frame`` (``None``: a single-frame object) of ``ds`` -> HWC uint8."""
    from pydicom.pixels import pixel_array

    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in GRAY + COLOUR:
        raise DataError(f"{where}: photometric interpretation {photometric!r} is not supported "
                        f"(medssl reads {', '.join(GRAY + COLOUR)})")
    try:
        with warnings.catch_warnings():  # e.g. "excess padding removed", once per item otherwise
            warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
            decoded = pixel_array(ds, index=frame, as_rgb=True)
    except Exception as exc:  # pydicom raises many kinds for truncated / corrupt pixel data
        raise DataError(f"{where}: cannot decode the pixel data ({type(exc).__name__}: {exc}); "
                        "the file is truncated, corrupt or uses an unsupported encoding") from exc
    if photometric in GRAY:
        if decoded.ndim != 2:
            raise DataError(f"{where}: {photometric} pixels decoded to shape {decoded.shape}, expected (rows, columns)")
        return gray_image(frame_tags(ds, frame), decoded, spec)
    if spec != "auto":
        raise DataError(f"{where}: a window ({spec!r}) applies to grayscale images; this file is {photometric}. "
                        "Use window: auto for colour data")
    return colour_image(ds, decoded, where)
