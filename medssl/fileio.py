"""Atomic file writes shared by checkpoints, exported encoders and caches, and the checks
on output paths. Content hashes of files live in :mod:`medssl.provenance`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

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


#: What to do after a failed write when the caller has nothing more specific to say.
WRITE_ADVICE = "free some space or choose another location, then run the command again"


def write_failure_reason(exc: BaseException, directory: PathLike) -> str:
    """Why a write into ``directory`` failed, in words, with the free space there now:
    ``disk full (No space left on device; 3 MB free on its filesystem now)``.

    Only the errno, or a writer's own words for it (safetensors' ``StorageFull``, "No space
    left", "os error 28"), say "disk full". Anything else is reported as it is: a
    RuntimeError without an errno is not guessed to be a full disk (a DataLoader worker
    killed by a group SIGTERM once surfaced inside ``torch.save`` that way). Checkpoints are
    written through a file object (:mod:`medssl.checkpoint_io`), which gives a full disk
    its errno."""
    import errno
    import shutil

    try:  # measured after the partial file was removed, so it can look roomier than it was
        free = f"{shutil.disk_usage(_nearest_existing(Path(directory))).free / 1e6:.0f} MB free on its filesystem now"
    except OSError:
        free = "free space unknown"
    detail = " ".join(str(exc).split())[:200]
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({exc.strerror}; {free})"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({exc.strerror})"
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return "the filesystem is read-only"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}; {free}"
    if "StorageFull" in detail or "No space left" in detail or "os error 28" in detail.lower():
        return f"disk full ({detail}; {free})"
    if isinstance(exc, RuntimeError) or type(exc).__name__ == "SafetensorError":
        return f"the write failed ({type(exc).__name__}: {detail}; {free})"
    return f"{detail}; {free}"


def _is_write_failure(exc: BaseException) -> bool:
    # A writer's own bug (TypeError, ...) or our own error is not a failed write.
    from medssl.errors import MedSSLError

    if isinstance(exc, MedSSLError):
        return False
    return isinstance(exc, (OSError, RuntimeError)) or type(exc).__name__ == "SafetensorError"


def atomic_write(path: PathLike, write: Callable[[Path], object], what: str = "",
                 advice: Optional[str] = None) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, fsync it, then rename
    it over ``path``: a reader sees the old file or the whole new one, never a part.

    The file gets the permissions of an ordinary new file (``0o666`` minus the umask), not
    the owner-only mode of a temporary file, so colleagues sharing a run can read it.

    Raises:
        WriteError: the write failed (disk full, no permission, read-only filesystem):
            ``cannot write {what} {path}: {reason}; {advice}`` (default advice
            :data:`WRITE_ADVICE`). The temporary is removed and the old file kept.
    """
    from medssl.errors import WriteError

    target = Path(path)
    tmp_path: Optional[Path] = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
        if not _is_write_failure(exc):
            raise
        label = f"{what} {target}" if what else str(target)
        raise WriteError(f"cannot write {label}: {write_failure_reason(exc, target.parent)}; "
                         f"{advice or WRITE_ADVICE}") from exc
    return target


def atomic_write_text(path: PathLike, text: str, what: str = "", advice: Optional[str] = None) -> Path:
    """:func:`atomic_write` of UTF-8 ``text``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what, advice)


def atomic_savefig(fig: object, path: PathLike, what: str = "figure", advice: Optional[str] = None,
                   **kwargs: object) -> Path:
    """``fig.savefig(path, **kwargs)`` through :func:`atomic_write` (the format comes from
    ``path``'s suffix, since the temporary file's name ends in ``.tmp``)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs), what, advice)  # type: ignore[attr-defined]


def check_inside(path: PathLike, root: PathLike, what: str) -> Path:
    """``path`` if it (following every symbolic link) stays inside ``root``; else a
    ConfigError naming the link and where it points, before anything is read from it.

    A run directory's files are medssl's own: a link planted there that leads elsewhere
    (``checkpoints/step_99999999.pt -> /etc/shadow``) is refused, never read."""
    from medssl.errors import ConfigError

    p = Path(path)
    try:
        target = p.resolve(strict=False)
        base = Path(root).resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # a link loop
        raise ConfigError(f"{p} ({what}) cannot be resolved ({exc}); remove it") from exc
    if target != base and base not in target.parents:
        raise ConfigError(f"{p} ({what}) is a link to {target}, outside {base}; medssl does not read files "
                          f"outside the run directory through its links. Remove the link (or copy the file in)")
    return p


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
