"""The ``medssl`` command line.

Each command group lives next to the code it drives and contributes its own
sub-parser through an ``add_parser(subparsers)`` function, so this file only wires
them together and turns :class:`~medssl.errors.MedSSLError` into a one-line message
and exit status 2 (set ``MEDSSL_DEBUG=1`` for the full traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
import traceback
import warnings
from typing import Any, Iterator, List, Optional

from medssl._version import __version__
from medssl.errors import DataWarning, MedSSLError, user_message
from medssl.memory import cannot_allocate_message, is_allocation_failure
from medssl.threads import prefer_passive_wait
from medssl.train.signals import stop_signals

# (module, function) pairs; each function takes the subparsers object and registers
# one command (group) whose parser sets ``func`` via ``set_defaults``.
_COMMAND_PROVIDERS = (
    ("medssl.data.commands", "add_parser"),
    ("medssl.augment.commands", "add_parser"),
    ("medssl.train.commands", "add_parser"),
    ("medssl.eval.commands", "add_parser"),
)

@contextlib.contextmanager
def hold_ctrl_c() -> Iterator[None]:
    """Hold SIGINT inside the block and raise ``KeyboardInterrupt`` when it ends.

    Importing torch runs Python callbacks from C++ (pybind11); a ``KeyboardInterrupt``
    raised inside one cannot cross back into C++ and aborts the process
    (``terminate called after throwing an instance of 'pybind11::error_already_set'``,
    seen under load when Ctrl-C lands ~0.6 s into start-up). Held, the interrupt is raised
    in plain Python once the imports are done: Ctrl-C still ends the command, one line and
    status 130, a few seconds later at most. A SIGINT that is ignored (a job started with
    ``&`` by a non-interactive shell) or handled by someone else is left as it is, and so
    is a call outside the main thread, where Python cannot install handlers.
    """
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: List[int] = []
    with stop_signals(lambda signum, frame: received.append(signum), signals=(signal.SIGINT,)):
        yield
    if received:
        raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medssl",
        description="Self-supervised pretraining and transfer of image encoders on medical images.",
    )
    parser.add_argument("--version", action="version", version=f"medssl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    with hold_ctrl_c():  # the command modules import torch
        for module, fn in _COMMAND_PROVIDERS:
            getattr(importlib.import_module(module), fn)(sub)
    return parser


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: Optional[str] = None, _default: Any = warnings.showwarning) -> None:
    """Our data warnings as one ``medssl: warning:`` line; any other warning as Python shows it."""
    if issubclass(category, DataWarning):
        print(f"medssl: warning: {message}", file=sys.stderr if file is None else file)
    else:
        _default(message, category, filename, lineno, file, line)


# A full disk, an exceeded quota, a read-only filesystem: only ever a write that failed.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

# Flags that name paths: `--out=~/x` reaches us unexpanded (the shell expands `~` only at
# the start of a word), so it is expanded here as every path key of a config is.
_PATH_FLAGS = ("config", "out", "out_dir", "encoder", "data", "test_data", "run_dir", "dirs", "slides", "dir")


def _expand_home(args: argparse.Namespace) -> None:
    for name in _PATH_FLAGS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.expanduser(v) if isinstance(v, str) and v.startswith("~") else v
                                 for v in value])


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``medssl ARGV``; returns the exit status (2 for our errors, 130 for Ctrl-C)."""
    # Ctrl-C lands anywhere, most often in the seconds of importing torch while the
    # parser is built: one line, never a traceback through importlib.
    try:
        # Before any command module imports torch: OpenMP reads its wait policy once, at load.
        prefer_passive_wait()
        return _run(argv)
    except KeyboardInterrupt:
        print("medssl: interrupted", file=sys.stderr)
        return 130


def _run(argv: Optional[List[str]]) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key.sub=value` overrides may come after options (`pretrain cfg.yaml --resume a.b=1`)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
        "=" in e and not e.startswith("-") for e in extra
    ):
        args.overrides.extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _expand_home(args)
    try:
        if isinstance(getattr(args, "seed", None), int):  # every command's --seed, in the seed range
            from medssl.config import check_seed

            check_seed("--seed", args.seed)
        return int(args.func(args) or 0)
    except MedSSLError as exc:
        if os.environ.get("MEDSSL_DEBUG"):
            traceback.print_exc()
        print(f"medssl: error: {user_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a writer medssl does not wrap itself (h5py, PIL) on a full or read-only disk
        if exc.errno not in _WRITE_ERRNOS:
            raise
        if os.environ.get("MEDSSL_DEBUG"):
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        print(f"medssl: error: cannot write{where}: {exc.strerror}; free some space or choose another "
              "location, then run the command again", file=sys.stderr)
        return 2
    except MemoryError as exc:  # an allocation no estimate caught (see medssl.memory)
        if os.environ.get("MEDSSL_DEBUG"):
            traceback.print_exc()
        print(f"medssl: error: {cannot_allocate_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # torch's allocator, OpenCV, numpy: allocation failures only
        if not is_allocation_failure(exc):
            raise
        if os.environ.get("MEDSSL_DEBUG"):
            traceback.print_exc()
        print(f"medssl: error: {cannot_allocate_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
