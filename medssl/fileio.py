"""Atomic file writes shared by checkpoints, exported encoders and caches, and the checks
on output paths. Content hashes of files live in :mod:`medssl.provenance`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

#: A filesystem path as users pass it: a string or any ``os.PathLike`` (``pathlib.Path``).
PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every filesystem lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, fsync it, then rename
    it over ``path``: a reader sees the old file or the whole new one, never a part.

    The file gets the permissions of an ordinary new file (``0o666`` minus the umask), not
    the owner-only mode of a temporary file, so colleagues sharing a run can read it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return target


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_path(path: PathLike, what: str, kind: str = "directory") -> Path:
    """``path`` as a Path once it is clear it can be created and written, before any work
    is done or anything is created; else a ConfigError naming ``what`` (``"--out"``).

    ``kind`` is ``"directory"`` (created later, may exist already) or ``"file"`` (written
    later, replacing an existing file).
    """
    from medssl.errors import ConfigError

    p = Path(path)
    if kind == "directory" and p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {p} is an existing file, not a directory; give a directory path "
                          "(it is created when missing)")
    if kind == "file" and p.is_dir():
        raise ConfigError(f"{what} {p} is an existing directory; give a file name")
    anchor = _nearest_existing(p if kind == "directory" else p.parent)
    if not anchor.is_dir():
        raise ConfigError(f"{what} {p} cannot be created: {anchor} is a file, not a directory; choose another path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {p} cannot be written: no permission to write in {anchor}; "
                          "choose a writable location")
    return p
