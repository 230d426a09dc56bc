"""Facts the docs state that a test can check: config defaults, option names, file counts.

Numbers nothing checks drift (a README test count, "the eight" PCAM files next to a list
of six); each class of checkable fact the docs state is compared with the program here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

import doc_recipes as dr
from medssl.config import parse_override
from medssl.train.config import PretrainConfig

REPO = dr.REPO
DOC_FILES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def _defaults(cls: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            out[f.name] = "required"
    return out


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return {k: _plain(x) for k, x in dataclasses.asdict(v).items()}
    return list(v) if isinstance(v, tuple) else v


def configuration_rows() -> Iterator[Tuple[str, str, str]]:
    """``(section, key, documented default)`` of every key table of docs/configuration.md
    (section "" is the top level)."""
    section = None
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        m = re.match(r"^## (?:`(\w+)`|Top level)", line)
        if m:
            section = m.group(1) or ""
            continue
        if line.startswith("## "):
            section = None
            continue
        m = re.match(r"^\| `([\w.]+)` \| (.+?) \|", line)
        if m and section is not None:
            yield section, m.group(1), m.group(2).strip()


def _schema(section: str) -> Dict[str, Any]:
    top = _defaults(PretrainConfig)
    return top if section == "" else _defaults(type(top[section]))


ROWS = list(configuration_rows())


def test_configuration_tables_are_found() -> None:
    assert {s for s, _, _ in ROWS} >= {"", "augment", "model", "support_set", "optim", "train"} and len(ROWS) > 40


@pytest.mark.parametrize("section,key,documented", ROWS, ids=[f"{s or 'top'}.{k}" for s, k, _ in ROWS])
def test_documented_default_is_the_schema_default(section: str, key: str, documented: str) -> None:
    schema = _schema(section)
    assert key in schema, f"docs/configuration.md documents {section}.{key}, which the config schema lacks"
    if documented == "required":
        assert schema[key] == "required"
        return
    value = parse_override(f"x={documented.strip('`')}")[1]  # parsed as an override is: `1e-3` is a number
    assert _plain(value) == _plain(schema[key]), f"{section}.{key}: documented {documented}, schema {schema[key]!r}"


@pytest.mark.parametrize("section", ["", "augment", "model", "support_set", "optim", "train"])
def test_every_schema_key_is_documented(section: str) -> None:
    documented = {k for s, k, _ in ROWS if s == section}
    missing = sorted(set(_schema(section)) - documented - ({"augment", "model", "support_set", "optim", "train"}
                                                            if section == "" else set()))
    assert missing == [], f"docs/configuration.md has no row for {section or 'top-level'} key(s) {missing}"


# ------------------------------------------------------------------ option names
# Options of other programs that the docs show (torchrun, pip, tensorboard, docker, medmnist).
EXTERNAL_OPTIONS = {"--nproc_per_node", "--nnodes", "--standalone", "--rdzv-backend", "--rdzv-endpoint",
                    "--rdzv-id", "--index-url", "--logdir", "--cpuset-cpus", "--cpus", "--root", "--size",
                    # torchrun's and Slurm's (sbatch / srun), in docs/distributed.md's Slurm section
                    "--max-restarts", "--shutdown-timeout", "--signal", "--requeue", "--open-mode", "--nodes",
                    "--ntasks-per-node", "--gpus-per-node", "--time", "--kill-on-bad-exit"}


def _parser_options() -> Dict[str, Set[str]]:
    from test_cli_help import PARSERS

    return {prog: {o for a in p._actions for o in a.option_strings} for prog, p in PARSERS}


def _code_spans(text: str) -> List[str]:
    """Inline code spans and the lines of fenced code blocks."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", prose) + [ln for b in blocks for ln in b.splitlines()]


def documented_option_uses() -> List[Tuple[str, str, str]]:
    """``(file, command or '', --option)`` for every option in a code span of README / docs
    (docs/benchmarks.md shows the scripts' own options and is left out)."""
    out = []
    for f in DOC_FILES:
        if f.name == "benchmarks.md":
            continue
        for span in _code_spans(f.read_text()):
            flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", span.split(" #")[0])
            if not flags:
                continue
            m = re.search(r"(?:^|\s|-m )medssl((?: [a-z]+){1,2})", span)
            if m:
                out += [(f.name, "medssl" + m.group(1), flag) for flag in flags]
            elif not re.match(r"\s*(python|docker|pip|tensorboard|bash)\b", span):
                out += [(f.name, "", flag) for flag in flags]
    return out


def test_options_named_in_the_docs_exist() -> None:
    opts = _parser_options()
    every = set().union(*opts.values()) | EXTERNAL_OPTIONS
    uses = documented_option_uses()
    assert len(uses) > 30  # the scan reads the docs
    wrong = []
    for doc, cmd, flag in uses:
        if cmd:
            prog = cmd
            while prog not in opts and " " in prog:
                prog = prog.rsplit(" ", 1)[0]
            if flag not in opts[prog] and flag not in EXTERNAL_OPTIONS:
                wrong.append(f"{doc}: `{cmd} ... {flag}`: {prog} has no {flag}")
        elif flag not in every:
            wrong.append(f"{doc}: {flag} is no option of any medssl command")
    assert wrong == []


# ------------------------------------------------------------------ counts and figures
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10}


def _count(word: str) -> int:
    return int(word) if word.isdigit() else NUMBER_WORDS[word.lower()]


def _texts() -> Iterator[Tuple[str, str]]:
    for f in DOC_FILES + sorted((REPO / "configs").rglob("*.yaml")):
        yield str(f.relative_to(REPO)), f.read_text()


def test_pcam_file_counts_match_the_loader() -> None:
    """"the N camelyonpatch_level_2_split_*.h5 files": x and y of each split the loader reads."""
    from medssl.data.pcam import SPLIT_ALIASES, split_files

    truth = len({p for s in set(SPLIT_ALIASES.values()) for k, p in split_files("r", s).items() if k != "meta"})
    claims = [(name, m.group(1)) for name, text in _texts() for m in re.finditer(
        r"\b(\w+)\s+`?camelyonpatch_level_2_split_\*(?:\.h5)?`?\s+files", text)]
    claims += [(name, m.group(1)) for name, text in _texts() for m in re.finditer(r"\b(\w+) \.h5 files", text)]
    claims = [(n, w) for n, w in claims if w.isdigit() or w.lower() in NUMBER_WORDS]
    assert claims, "the scan finds the PCAM file counts"
    assert [c for c in claims if _count(c[1]) != truth] == [], f"PCAM has {truth} .h5 files"


def test_provenance_file_list_length_matches_the_docs() -> None:
    from medssl.provenance import MAX_FILES

    text = (REPO / "docs" / "transfer.md").read_text()
    stated = re.findall(r"the first (\d+) files'", text)
    assert stated and all(int(n) == MAX_FILES for n in stated)


def test_readme_states_no_test_count() -> None:
    """A count of tests goes stale with every new test and nothing checks it: pytest prints it."""
    text = (REPO / "README.md").read_text()
    assert re.findall(r"\b\d[\d,]* (?:tests|passed|skipped)\b|SKIPPED \[\d+\]|\b[Aa]bout \d+ of its tests", text) == []


def test_demo_time_is_one_measured_number_with_its_date() -> None:
    """Timings of the demo: stated once (the README), with the date they were measured;
    the config and other docs refer to it instead of keeping their own figure."""
    figures = []
    for name, text in _texts():
        if name == "docs/benchmarks.md":
            continue
        for line in text.splitlines():
            if "demo" in line.lower() or name == "configs/demo.yaml" or name == "README.md":
                figures += [(name, line) for _ in re.findall(r"\b\d+(?:-\d+)? s\b", line)]
    readme = (REPO / "README.md").read_text()
    setup = readme[readme.index("## Set up"):readme.index("Run the tests")]
    assert re.search(r"\b15 s on an idle 2-core machine \([^)]*\d{4}-\d{2}-\d{2}", setup.replace("\n", " "))
    others = [f for f in figures if f[0] != "README.md"]
    assert all("15 s" in line for _, line in others), others
    assert "under a minute" not in " ".join(text for _, text in _texts() if _ != "docs/benchmarks.md")


def transfer_rows() -> List[Tuple[str, str]]:
    """``(dotted key, documented default)`` of docs/transfer.md's config key table; a row
    naming several keys gives one default each (``| `seeds`, `seed` | 3, 0 |``), and
    ``finetune.*`` lists ``name value`` pairs."""
    out: List[Tuple[str, str]] = []
    for line in (REPO / "docs" / "transfer.md").read_text().splitlines():
        m = re.match(r"^\| ((?:`[\w.*]+`(?:, )?)+) \| (.+?) \|", line)
        if not m:
            continue
        keys = re.findall(r"`([\w.*]+)`", m.group(1))
        values = [v.strip().strip("`") for v in m.group(2).split(", ")]
        if keys == ["finetune.*"]:
            out += [(f"finetune.{pair.split(' ', 1)[0]}", pair.split(" ", 1)[1]) for pair in values]
        elif len(keys) == len(values):
            out += list(zip(keys, values))
    return out


def test_transfer_key_table_defaults_are_the_schema_defaults() -> None:
    from medssl.eval.config import TransferConfig

    rows = transfer_rows()
    assert len(rows) >= 25
    wrong = []
    for key, documented in rows:
        section, _, name = key.rpartition(".")
        schema = _defaults(TransferConfig) if not section else _defaults(type(_defaults(TransferConfig)[section]))
        assert name in schema, f"docs/transfer.md documents {key}, which TransferConfig lacks"
        actual = schema[name]
        if documented == "required" or (key == "test_data" and documented == "data"):
            continue  # test_data's default is "the data" (None in the schema)
        if _plain(parse_override(f"x={documented}")[1]) != _plain(actual):
            wrong.append(f"{key}: documented {documented!r}, schema {actual!r}")
    assert wrong == []
