"""The ``medssl`` command line.

Each command group lives next to the code it drives and contributes its own
sub-parser through an ``add_parser(subparsers)`` function, so this file only wires
them together and turns :class:`~medssl.errors.MedSSLError` into a one-line message
and exit status 2 (set ``MEDSSL_DEBUG=1`` for the full traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, List, Optional

from medssl import __version__
from medssl.errors import MedSSLError

# (module, function) pairs; each function takes the subparsers object and registers
# one command (group) whose parser sets ``func`` via ``set_defaults``.
_COMMAND_PROVIDERS = (
    ("medssl.data.commands", "add_parser"),
    ("medssl.augment.commands", "add_parser"),
    ("medssl.train.commands", "add_parser"),
    ("medssl.eval.commands", "add_parser"),
)

# Commands whose engine lands in later releases: listed so that ``--help`` shows the
# whole surface, and refusing clearly rather than pretending to work.
_PLANNED: dict = {}


def _planned(name: str) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        print(
            f"medssl {name}: not available in medssl {__version__} yet (its engine is still being built); "
            "see the README for what works today.",
            file=sys.stderr,
        )
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medssl",
        description="Self-supervised pretraining and transfer of image encoders on medical images.",
    )
    parser.add_argument("--version", action="version", version=f"medssl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for module, fn in _COMMAND_PROVIDERS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a command group not yet built
            if exc.name != module:
                raise
            continue
        getattr(mod, fn)(sub)
    for name, help_text in _PLANNED.items():
        p = sub.add_parser(name, help=f"{help_text} (not yet available)")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=_planned(name))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
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
    try:
        return int(args.func(args) or 0)
    except MedSSLError as exc:
        if os.environ.get("MEDSSL_DEBUG"):
            traceback.print_exc()
        print(f"medssl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medssl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
