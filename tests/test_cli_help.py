"""Every option of every `medssl` command says what it does and, when it takes a value,
its default (or that it is required): checked by walking the real argparse parsers."""

from __future__ import annotations

import argparse
from typing import Iterator, List, Tuple

import pytest

from medssl.cli import build_parser


def walk(parser: argparse.ArgumentParser, prog: str = "medssl") -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{prog} {name}")


PARSERS = list(walk(build_parser()))


def _options(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                                                            argparse._SubParsersAction))]


def test_the_walk_reaches_every_command() -> None:
    progs = {p for p, _ in PARSERS}
    for cmd in ("pretrain", "transfer", "evaluate", "embed", "report", "data info", "data tile", "augment preview"):
        assert f"medssl {cmd}" in progs


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_every_option_has_help(prog: str, parser: argparse.ArgumentParser) -> None:
    bare = [a.option_strings[0] if a.option_strings else a.dest for a in _options(parser)
            if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert bare == [], f"{prog}: no help text for {bare}"


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_every_valued_option_states_its_default(prog: str, parser: argparse.ArgumentParser) -> None:
    """An option that takes a value says `default ...` (or `required`) in its help."""
    missing = []
    for a in _options(parser):
        if not a.option_strings or a.nargs == 0 or a.required:
            continue  # positionals, flags (store_true / store_const), required options
        text = (a.help or "").lower()
        if "default" not in text:
            missing.append(f"{a.option_strings[0]} ({a.help!r})")
    assert missing == [], f"{prog}: help without the default: {missing}"


def test_transfer_flag_defaults_match_the_config_schema() -> None:
    """The `(default X)` of a transfer / evaluate flag is TransferConfig's default for its key."""
    import dataclasses
    import re

    from medssl.eval.commands import _FLAG_KEYS
    from medssl.eval.config import TransferConfig

    schema = {f.name: f.default for f in dataclasses.fields(TransferConfig)
              if f.default is not dataclasses.MISSING}
    checked = 0
    for prog, parser in PARSERS:
        if prog not in ("medssl transfer", "medssl evaluate"):
            continue
        for a in _options(parser):
            key = _FLAG_KEYS.get(a.dest)
            m = re.search(r"\(default ([\w.]+)\)", a.help or "")
            if key in schema and m and key != "out":
                assert m.group(1) == str(schema[key]), f"{prog} {a.option_strings[0]}: help says {m.group(1)}, " \
                                                       f"config default is {schema[key]}"
                checked += 1
    assert checked >= 10
