"""Which DICOM transfer syntaxes can be decoded here, and which pip package adds the rest.

pydicom decodes uncompressed, deflated and RLE data itself; JPEG, JPEG-LS and JPEG 2000
need a plugin. :func:`check_decodable` is called once per data set, when it is opened, so
a missing decoder is an error naming the package before any training starts.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable

from medssl.errors import DataError

# UID -> pip packages that give pydicom a decoder for it.
PIP_PACKAGES: Dict[str, str] = {
    **{uid: "pylibjpeg pylibjpeg-libjpeg" for uid in (
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")},
    **{uid: "pylibjpeg pylibjpeg-openjpeg" for uid in (
        "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203")},
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}
NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")


def syntax_name(uid: str) -> str:
    """The transfer syntax's name (``JPEG 2000 Image Compression (Lossless Only)``), or the UID."""
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid


def decodable(uid: str) -> bool:
    """True when pydicom can decode pixel data of transfer syntax ``uid`` with what is installed."""
    if uid in NATIVE:
        return True
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(uid).is_available)
    except (NotImplementedError, ValueError):
        return False


def check_decodable(syntaxes: Iterable[str], where: str) -> None:
    """DataError naming the pip package(s) when any transfer syntax in ``syntaxes`` (one
    entry per file) cannot be decoded."""
    missing = Counter(uid for uid in syntaxes if not decodable(uid))
    if not missing:
        return
    parts = []
    for uid, n in missing.most_common():
        fix = (f"pip install {PIP_PACKAGES[uid]}" if uid in PIP_PACKAGES else
               "no decoder for it is known to medssl; convert the files (e.g. dcmdjpeg / gdcmconv --raw)")
        parts.append(f"{n} file(s) in {syntax_name(uid)} ({uid}): {fix}")
    raise DataError(f"{where}: no decoder installed for the compressed pixel data of " + "; ".join(parts))
