"""medssl.text: names in Markdown cells, one-line lists and CSV headers read back unchanged."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import List

import pytest

from medssl.text import counts_line, csv_header, md_cell, name_list, name_token

AWKWARD = ["normal, benign", "malignant|high grade", 'a "quoted" one', "back\\slash", " padded ", "",
           "two\nlines", "plain", "semi;colon"]


def split_list(text: str) -> List[str]:
    """Reads a :func:`name_list` (or :func:`counts_line`) back: items separated by ',';
    each quoted part is a JSON string, the rest is taken as it stands."""
    items = re.findall(r'(?:"(?:[^"\\]|\\.)*"|[^,"])+', text)
    quoted = re.compile(r'"(?:[^"\\]|\\.)*"')
    return [quoted.sub(lambda m: json.loads(m.group(0)), item.strip()) if quoted.search(item) else item.strip()
            for item in items]


def md_cells(row: str) -> List[str]:
    """The cells of a GFM table row (``\\|`` is a literal pipe, not a separator)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def test_plain_names_stay_bare() -> None:
    assert name_list(["tumor", "normal tissue", "class 2"]) == "tumor, normal tissue, class 2"


@pytest.mark.parametrize("name", [n for n in AWKWARD if "\n" not in n])
def test_a_list_splits_back_into_the_same_names(name: str) -> None:
    names = ["plain", name, "other, one"]
    assert split_list(name_list(names)) == names


def test_a_line_break_is_quoted_and_stays_on_one_line() -> None:
    token = name_token("two\nlines")
    assert "\n" not in token and json.loads(token) == "two\nlines"


def test_counts_line_is_unambiguous() -> None:
    line = counts_line({"malignant|high grade": 24, "normal, benign": 24})
    assert line == '"malignant|high grade" 24, "normal, benign" 24'


def test_md_cell_keeps_a_row_at_its_cell_count() -> None:
    row = "| " + " | ".join(md_cell(n) for n in AWKWARD) + " |"
    cells = md_cells(row)
    assert len(cells) == len(AWKWARD)
    assert cells[1] == "malignant|high grade" and cells[6] == "two lines"


def test_csv_header_round_trips_through_the_csv_module() -> None:
    header = [f"score_{csv_header(n)}" for n in AWKWARD]
    buf = io.StringIO()
    csv.writer(buf).writerow(header)
    assert buf.getvalue().count("\n") == 1  # one physical line
    assert next(csv.reader(io.StringIO(buf.getvalue()))) == header
