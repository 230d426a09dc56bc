"""MedMNIST file metadata: official ``medmnist.INFO`` entries and md5s, file names, and the
task / class names of a file (official INFO, or a sidecar ``<stem>.json`` for a custom one)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple

from medssl.errors import DataError
from medssl.fileio import PathLike
from medssl.tasks import normalise_task

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)
ZENODO_RECORD = "https://zenodo.org/records/10519652"

_SIZE_SUFFIX = re.compile(r"_(28|64|128|224)$")


@functools.lru_cache(maxsize=1)
def _official_info() -> Mapping[str, Mapping[str, Any]]:
    # Imported lazily: ``import medmnist`` pulls in its evaluator (sklearn, ~2 s).
    from medmnist.info import INFO

    return {k: v for k, v in INFO.items() if not k.endswith("3d")}


def official_info(flag: str) -> Optional[Mapping[str, Any]]:
    """``medmnist.INFO[flag]`` for an official 2-D flag, else ``None``."""
    return _official_info().get(flag.lower())


def size_key(size: Optional[int]) -> str:
    return "" if size in (None, 28) else f"_{size}"


def official_md5(flag: str, size: Optional[int] = None) -> Optional[str]:
    """The official md5 of ``{flag}.npz`` (``size`` None/28) or ``{flag}_{size}.npz``;
    ``None`` for a custom flag or a size the flag does not come in."""
    info = official_info(flag)
    return None if info is None else info.get(f"MD5{size_key(size)}")


def npz_filename(flag: str, size: Optional[int] = None) -> str:
    """The official file name: ``bloodmnist.npz`` (28 px) or ``bloodmnist_64.npz``."""
    return f"{flag}{size_key(size)}.npz"


def parse_stem(path: PathLike) -> Tuple[str, Optional[int]]:
    """``(flag, size)`` from a file name: ``x/bloodmnist_64.npz`` -> ``("bloodmnist", 64)``."""
    stem = Path(path).stem
    m = _SIZE_SUFFIX.search(stem)
    if m is None:
        return stem, None
    return stem[: m.start()], int(m.group(1))


def file_md5(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()



def normalise_class_names(names: Any, source: str) -> list[str]:
    if isinstance(names, Mapping):  # MedMNIST style {"0": "name", ...}
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: class_names dict keys must be integers 0..K-1") from exc
    if isinstance(names, (list, tuple)) and names:
        return [str(n) for n in names]
    raise DataError(f"{source}: class_names must be a non-empty list, got {names!r}")



def verify_md5(path: Path, flag: str, size: Optional[int]) -> None:
    """Raise :class:`DataError` unless ``path`` has the official md5 of ``flag`` / ``size``."""
    expected = official_md5(flag, size)
    if expected is None:
        raise DataError(
            f"{path}: verify=true but there is no official md5 for flag '{flag}' "
            f"size {size or 28} (not an official MedMNIST file); drop 'verify'"
        )
    got = file_md5(path)
    if got != expected:
        raise DataError(
            f"{path}: md5 {got} differs from the official {expected} of "
            f"{npz_filename(flag, size)}; the file is corrupt, truncated or not the "
            f"official one. Re-download it from {ZENODO_RECORD}"
        )


def read_meta(flag: str, path: Path, task: Optional[str], class_names: Optional[Sequence[str]]) -> Tuple[str, list[str], str]:
    """``(task, class_names, description)`` of ``flag``'s file at ``path``: from
    ``medmnist.INFO`` for an official flag, else the sidecar JSON; ``task`` /
    ``class_names`` arguments win over both."""
    info: Mapping[str, Any] = official_info(flag) or {}
    source = f"medmnist.INFO['{flag}']"
    if not info:
        sidecar = path.with_suffix(".json")
        source = str(sidecar)
        if sidecar.is_file():
            try:
                info = json.loads(sidecar.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"{sidecar}: cannot read the sidecar JSON: {exc}") from exc
            if not isinstance(info, Mapping):
                raise DataError(f"{sidecar}: expected a JSON object with keys task, class_names")
        elif task is None or class_names is None:
            raise DataError(
                f"{path}: '{flag}' is not an official MedMNIST flag and there is no sidecar "
                f"{sidecar.name} next to it, so its task and class names are unknown. Write "
                f'{sidecar.name} with {{"task": ..., "class_names": [...]}} or pass task and class_names'
            )
    raw_task = task if task is not None else info.get("task")
    raw_names = class_names if class_names is not None else info.get("label", info.get("class_names"))
    missing = [k for k, v in (("task", raw_task), ("class_names", raw_names)) if v is None]
    if missing:
        raise DataError(f"{source}: missing {', '.join(missing)}; pass it as an argument or add it there")
    return (
        normalise_task(raw_task, source, DataError),
        normalise_class_names(raw_names, source),
        str(info.get("description", "")),
    )
