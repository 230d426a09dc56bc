"""Names written into tables and one-line lists, so they read back as the same names.

Class names come from folder names, CSV cells and dataset metadata, so they may hold a
comma (``normal, benign``), a pipe (``malignant|high grade``), quotes or a line break.
Written raw, a pipe splits a Markdown table cell in two and a comma makes
``a 24, b, c 24`` unreadable. Every place medssl writes a name goes through one of:

* :func:`md_cell` -- text for one Markdown table cell (``|`` escaped, line breaks folded);
* :func:`name_token` / :func:`name_list` -- a name in a one-line list, double-quoted
  (JSON string syntax) when it holds a separator or a quote, bare otherwise;
* :func:`csv_header` -- a CSV column name: the ``csv`` module quotes commas and quotes,
  and line breaks are folded so every header is one physical line.

Paths in messages go through :func:`looked_at` / :func:`no_such_file`: a missing file is
named by the absolute path that was tried, not only as the user (or a config) wrote it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

# Characters that make a bare name ambiguous in a one-line list or a key/value line.
_NEEDS_QUOTES = re.compile(r'[,;|"\\]|^\s|\s$|^$|[\r\n\t]')


def one_line(text: object) -> str:
    """``text`` with every line break and tab as a single space."""
    return re.sub(r"[\r\n\t]+", " ", str(text))


def md_cell(text: object) -> str:
    """``text`` safe inside one Markdown (GFM) table cell: ``|`` as ``\\|``, one line."""
    return one_line(text).replace("|", "\\|")


def name_token(name: object) -> str:
    """A name for a one-line list: bare when plain, else a double-quoted JSON string
    (``"normal, benign"``), so the list splits back into the same names."""
    s = str(name)
    return json.dumps(s, ensure_ascii=False) if _NEEDS_QUOTES.search(s) else s


def name_list(names: Iterable[object], sep: str = ", ") -> str:
    """``names`` joined by ``sep``, each through :func:`name_token`."""
    return sep.join(name_token(n) for n in names)


def counts_line(counts: Mapping[object, object]) -> str:
    """``{name: count}`` as ``name 24, "normal, benign" 24`` (names through :func:`name_token`)."""
    return ", ".join(f"{name_token(k)} {v}" for k, v in counts.items())


def csv_header(name: object) -> str:
    """A CSV column name on one physical line (the ``csv`` module quotes the rest)."""
    return one_line(name)


def looked_at(path: object) -> str:
    """The absolute path a relative ``path`` was looked up at, for messages: relative paths
    resolve against the working directory, which the user may not have in mind."""
    p = Path(str(path)).expanduser()
    if p.is_absolute():
        return str(p)
    return f"{os.path.abspath(p)}, relative to the working directory"


def no_such_file(what: str, path: object, hint: str = "") -> str:
    """``"<what> <path> not found (looked at /abs/path, relative to the working directory)"``
    (the parenthesis only for a relative path), then ``hint``."""
    p = Path(str(path)).expanduser()
    at = "" if str(p) == looked_at(p) else f" (looked at {looked_at(p)})"
    return f"{what} {path} not found{at}" + (f"; {hint}" if hint else "")
