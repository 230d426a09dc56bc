"""Where to get a MedMNIST file.

medssl never downloads anything: a missing file is a :class:`DataError` whose message
says where the file is (Zenodo, the direct link) and how to fetch it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from medssl.data.medmnist.files import ZENODO_RECORD, npz_filename, official_info, size_key


def how_to_get(flag: str, size: Optional[int], root: Path) -> str:
    info = official_info(flag)
    if info is None:
        return (
            f"'{flag}' is not an official MedMNIST flag, so medssl cannot fetch it: write it with "
            "medssl.data.medmnist.write_medmnist_npz or pass 'path' to the file."
        )
    url = info.get(f"url{size_key(size)}", ZENODO_RECORD)
    return (
        f"Get it from {ZENODO_RECORD} (direct link: {url}) and put it in {root} "
        f"(python -m medmnist download --size={size or 28} --root={root} fetches every flag)."
    )
