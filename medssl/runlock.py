"""An exclusive lock on an output directory, held for the life of a run.

Two ``medssl pretrain`` (or ``medssl transfer``) processes writing into one directory
interleave their checkpoints and metrics; the second one is refused instead. The lock is
an OS file lock (``fcntl.flock``) on ``.medssl.lock`` inside the directory: the kernel
drops it when the holder's file descriptor closes, on any exit including SIGKILL, so a
killed run never leaves a stale lock behind. The file itself stays (deleting it would let
a third process lock a fresh inode while the second still holds the old one); it records
the holder's PID and host for the refusal message.

On platforms without ``fcntl`` (Windows) no lock is taken. ``flock`` on network
filesystems (NFS) depends on the server; see docs/reliability.md.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Optional, Type, Union

from medssl.errors import ConfigError, MedSSLError

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".medssl.lock"


class RunDirBusy(MedSSLError):
    """Another process holds the lock on this output directory."""


class RunLock:
    """``with RunLock(run_dir, "out_dir"):`` — create ``run_dir`` and hold its lock.

    Args:
        directory: the output directory (created if missing).
        key: how the user set it (``"out_dir"``, ``"--out"``), named in errors.

    Raises:
        RunDirBusy: another live process holds the lock (the message names its PID).
        ConfigError: the directory cannot be created or written.
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], key: str = "out_dir") -> None:
        self.directory = Path(directory)
        self.key = key
        self._fd: Optional[int] = None

    @property
    def path(self) -> Path:
        return self.directory / LOCK_NAME

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:  # a path under a file, a read-only disk, no permission
            raise ConfigError(
                f"cannot write the run directory {self.directory} ({self.key}): {exc.strerror or exc}; "
                f"choose a writable {self.key}"
            ) from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunDirBusy(
                    f"{self.directory} ({self.key}) is in use by another medssl process ({holder}); "
                    f"wait for it to finish, stop it, or choose another {self.key}"
                ) from None
            except OSError:  # a filesystem without flock support: run unlocked, as without fcntl
                pass
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "PID unknown"


__all__ = ["RunLock", "RunDirBusy", "LOCK_NAME"]
