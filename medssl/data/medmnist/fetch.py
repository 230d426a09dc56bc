"""Where to get a MedMNIST file, and the opt-in download (``download: true``).

medssl never downloads on its own: a missing file is a :class:`DataError` whose message
says where the file is (Zenodo, the direct link) and how to fetch it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from medssl.data.medmnist.files import ZENODO_RECORD, npz_filename, official_info, size_key
from medssl.errors import ConfigError, DataError


def how_to_get(flag: str, size: Optional[int], root: Path) -> str:
    info = official_info(flag)
    if info is None:
        return (
            f"'{flag}' is not an official MedMNIST flag, so medssl cannot fetch it: write it with "
            "medssl.data.medmnist.write_medmnist_npz or pass 'path' to the file."
        )
    url = info.get(f"url{size_key(size)}", ZENODO_RECORD)
    return (
        f"Get it from {ZENODO_RECORD} (direct link: {url}) and put it in {root}, "
        f"or pass 'download: true' to fetch it with medmnist's downloader "
        f"(python -m medmnist download --size={size or 28} --root={root} fetches every flag)."
    )



def download(flag: str, size: Optional[int], root: Path) -> None:
    """Fetch one official file with medmnist's public dataset class (``download=True``;
    md5-checked by medmnist)."""
    import medmnist

    info = official_info(flag)
    if info is None:
        raise DataError(f"cannot download '{flag}': not an official MedMNIST flag")
    cls = getattr(medmnist, info["python_class"])
    if (size or 28) not in cls.available_sizes:
        raise ConfigError(f"MedMNIST {flag} comes in sizes {cls.available_sizes}, not {size}")
    root.mkdir(parents=True, exist_ok=True)
    try:
        # The constructor downloads, then reads one split; a one-off cost at download time.
        cls(split="test", root=str(root), size=size or 28, download=True, mmap_mode="r")
    except RuntimeError as exc:
        raise DataError(f"download of {npz_filename(flag, size)} into {root} failed: {exc}") from exc
