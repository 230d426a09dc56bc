"""The error types medssl raises.

Every failure a user can cause (a missing or malformed file, a bad config value, an
unknown name) raises a subclass of :class:`MedSSLError` whose message says what was
wrong, where (file, key), and what to do. Errors from dependencies (h5py, numpy, PIL)
are caught at the boundary and re-raised as one of these, chained with ``from``.
"""

from __future__ import annotations


class MedSSLError(Exception):
    """Base class of every error medssl raises on purpose."""


class DataError(MedSSLError):
    """A dataset file or folder is missing, malformed or inconsistent."""


class ConfigError(MedSSLError, ValueError):
    """A configuration value or key is invalid."""


class EvaluationError(MedSSLError, ValueError):
    """Labels, scores or embeddings given to evaluation are invalid (shape, NaN, range)."""


class WriteError(MedSSLError, OSError):
    """A file could not be written (disk full, over quota, read-only, no permission); the
    message names the file, the cause and what to do. An ``OSError`` too, so code that
    already handles write failures keeps working."""


class DataWarning(UserWarning):
    """Data was read but something was skipped or looks doubtful; the message says what.
    The CLI prints it as ``medssl: warning: ...``."""


class RegistryError(ConfigError, KeyError):
    """A name is not in a registry (unknown dataset, objective, backbone, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0]) if self.args else ""


def user_message(exc: BaseException) -> str:
    """The message of ``exc`` as the user should read it.

    An error raised inside a DataLoader worker process reaches the main process re-raised
    by torch as the same class with the worker's whole traceback as its message
    (``Caught DataError in DataLoader worker process 0. Original Traceback ...``); this
    gives back the original message, so ``num_workers: 2`` reads as ``num_workers: 0``."""
    text = str(exc)
    head, sep, tail = text.partition("Original Traceback (most recent call last):")
    if not sep or "DataLoader worker process" not in head:
        return text
    # A traceback's frames are indented; the exception line ("pkg.mod.Class: message") is not.
    lines = tail.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln and not ln[0].isspace() and ": " in ln]
    if not starts:
        return " ".join(text.split())
    first = lines[starts[-1]]
    message = "\n".join([first.split(": ", 1)[1], *lines[starts[-1] + 1:]]).strip()
    return message
