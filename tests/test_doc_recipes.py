"""Every documented recipe connects: what a command reads, an earlier step wrote.

The commands of README.md's and docs/*.md's ```bash blocks and the example lines of the
shipped configs are parsed with the real ``medssl`` parser and resolved with medssl's own
config loaders (tests/doc_recipes.py). A run directory, an encoder, an evaluation or a
tiling that a command reads must be written by an earlier command of the same document
(a document other than the README may also use what the README's commands wrote), and a
shipped transfer config's encoder must be the ``out_dir`` of a shipped pretraining
config. tests/e2e/test_recipe_chains.py runs the chains themselves at toy scale.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

import doc_recipes as dr

REPO = dr.REPO
TRANSFER_CONFIGS = sorted((REPO / "configs" / "transfer").glob("*.yaml"))
PRETRAIN_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
ALL_CONFIGS = TRANSFER_CONFIGS + PRETRAIN_CONFIGS + sorted((REPO / "configs" / "objectives").glob("*.yaml"))
RECIPES = dr.doc_recipes()


def _writes(commands: List[dr.Command]) -> List[str]:
    out: List[str] = []
    for c in commands:
        args = dr.medssl_argv(c.argv)
        if args is not None:
            out += dr.effects(args).writes
    return out


README_WRITES = _writes(RECIPES["README.md"])


def _pretrain_out_dirs() -> Dict[str, str]:
    return {str(p.relative_to(REPO)): dr.effects(["pretrain", str(p)]).writes[0] for p in PRETRAIN_CONFIGS}


def test_the_walker_sees_the_documented_recipes() -> None:
    """Guards the parser of the docs: the recipes this file checks are really found."""
    transfer = [" ".join(c.argv) for c in RECIPES["docs/transfer.md"]]
    assert "medssl pretrain configs/stl10.yaml" in transfer
    assert "medssl transfer configs/transfer/stl10_to_pcam.yaml" in transfer
    assert any(a.startswith("medssl transfer --encoder runs/demo --data sample_data/medmnist/ihcstain.npz")
               for a in (" ".join(c.argv) for c in RECIPES["README.md"]))  # a `\` continuation joined
    assert "medssl data sample sample_data" in [" ".join(c.argv) for c in RECIPES["README.md"]]  # `&&` split


@pytest.mark.parametrize("doc", sorted(RECIPES))
def test_documented_chain_connects(doc: str) -> None:
    before = [] if doc == "README.md" else README_WRITES
    assert dr.broken_links(RECIPES[doc], before) == []


def test_a_broken_chain_is_caught() -> None:
    """The check itself: a transfer from a run nobody wrote is reported, with its line."""
    cmds = dr.split_commands("medssl pretrain configs/stl10.yaml\n"
                             "medssl transfer --encoder runs/stl10 --data data/pcam --out runs/x\n", "doc.md", 1)
    problems = dr.broken_links(cmds)
    assert len(problems) == 1 and problems[0].startswith("doc.md:2:") and "encoder runs/stl10" in problems[0]


@pytest.mark.parametrize("doc", sorted(RECIPES))
def test_comments_name_what_the_command_writes(doc: str) -> None:
    """`medssl pretrain configs/stl10.yaml   # ... -> runs/stl10` must be what it writes."""
    by_line: Dict[str, List[dr.Command]] = {}
    for c in RECIPES[doc]:
        by_line.setdefault(c.source, []).append(c)
    wrong = []
    for source, cmds in by_line.items():
        claimed = {p for c in cmds for p in dr.claimed_writes(c)}
        written = _writes(cmds)
        wrong += [f"{source}: comment says {p}, the command writes {written}" for p in claimed
                  if not dr.covered(p, written)]
    assert wrong == []


def _prose_claims() -> List[tuple]:
    """``configs/x.yaml -> runs/y`` and "`medssl pretrain configs/x.yaml`, which writes runs/y"
    in every document and shipped config."""
    pattern = re.compile(r"(configs/[\w/.-]+\.yaml)`?\)?,?\s*(?:->|→|which writes)\s*`?(runs/[\w/.-]+?)`?[\s),.;]")
    files = [REPO / d for d in RECIPES] + PRETRAIN_CONFIGS + TRANSFER_CONFIGS
    return [(str(f.relative_to(REPO)), cfg, run) for f in files for cfg, run in pattern.findall(f.read_text())]


def test_prose_names_the_out_dir_of_each_pretraining_config() -> None:
    claims = _prose_claims()
    out_dirs = _pretrain_out_dirs()
    assert any(cfg == "configs/stl10.yaml" for _, cfg, _ in claims)  # the walker finds them
    assert [c for c in claims if c[1] in out_dirs and out_dirs[c[1]] != c[2]] == []


@pytest.mark.parametrize("config", TRANSFER_CONFIGS, ids=lambda p: p.name)
def test_shipped_transfer_config_reads_a_shipped_run(config: Path) -> None:
    eff = dr.effects(["transfer", str(config)])
    (_, encoder), = eff.products
    out_dirs = _pretrain_out_dirs()
    assert encoder in out_dirs.values(), (
        f"{config.name}: encoder {encoder} is not the out_dir of any shipped pretraining config ({out_dirs})")
    for _, path in eff.inputs:
        assert dr.user_input(path) or dr.covered(path, README_WRITES), f"{config.name} reads {path}"


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_example_commands_in_a_shipped_config_connect(config: Path) -> None:
    """The ``#   medssl ...`` lines of a config's comments; a transfer config's run after the
    shipped pretraining runs."""
    before = (list(_pretrain_out_dirs().values()) if config in TRANSFER_CONFIGS else []) + README_WRITES
    cmds = dr.config_recipe(config)
    if config in TRANSFER_CONFIGS:
        assert cmds, f"{config.name} shows no example command"
    assert dr.broken_links(cmds, before) == []


def test_documented_sample_paths_exist_in_the_sample(sample_dir: Path) -> None:
    """A documented read under `medssl data sample sample_data` names a file the sample has."""
    missing = []
    for doc, cmds in list(RECIPES.items()) + [(str(p), dr.config_recipe(p)) for p in TRANSFER_CONFIGS]:
        for c in cmds:
            args = dr.medssl_argv(c.argv)
            if args is None:
                continue
            for _, path in dr.effects(args).inputs:
                if path.startswith("sample_data/") and not (sample_dir / path[len("sample_data/"):]).exists():
                    missing.append(f"{c.source}: {path}")
    shipped = [("transfer", c) for c in TRANSFER_CONFIGS] + [("pretrain", c) for c in ALL_CONFIGS
                                                             if c not in TRANSFER_CONFIGS]
    for command, config in shipped:
        for _, path in dr.effects([command, str(config)]).inputs:
            if path.startswith("sample_data/") and not (sample_dir / path[len("sample_data/"):]).exists():
                missing.append(f"{config.name}: {path}")
    assert missing == []


def test_every_pretraining_config_writes_its_own_run_directory() -> None:
    """Two shipped configs writing one out_dir would resume each other's runs."""
    out_dirs = _pretrain_out_dirs()
    assert len(set(out_dirs.values())) == len(out_dirs), out_dirs
    for path in PRETRAIN_CONFIGS:
        assert yaml.safe_load(path.read_text())["out_dir"] == out_dirs[str(path.relative_to(REPO))]


def test_a_python_snippet_reading_a_run_nobody_wrote_is_caught() -> None:
    text = ("```bash\nmedssl pretrain configs/demo.yaml\n```\n\n```python\n"
            'model, pre = medssl.load_encoder("runs/demo")\nother = medssl.load_encoder("runs/stl10")\n'
            'cfg = {"out": "runs/new"}\n```\n')
    cmds = [c for _, c in sorted([(1, c) for c in dr.split_commands("medssl pretrain configs/demo.yaml", "d.md", 2)]
                                 + dr.python_reads(text, "d.md"), key=lambda t: t[0])]
    problems = dr.broken_links(cmds, ["sample_data"])
    assert len(problems) == 1 and "runs/stl10" in problems[0]  # runs/demo is written; "out" is a write


def test_a_second_run_into_the_same_out_dir_is_caught() -> None:
    """Two documented runs into one out_dir: the second is refused by medssl (or its
    --resume is, when the recipe changed), so the recipe cannot be followed as written."""
    cmds = dr.split_commands("medssl pretrain configs/pcam.yaml objective.alpha=0.1\n"
                             "medssl pretrain configs/pcam.yaml --resume\n"
                             "medssl pretrain configs/pcam.yaml\n"
                             "medssl pretrain configs/pcam.yaml --print-config\n"
                             "medssl pretrain configs/pcam.yaml train.epochs=2 --resume\n", "d.md", 1)
    problems = dr.broken_links(cmds)
    assert [p.split(":")[1] for p in problems] == ["2", "3"]
    assert "another recipe (objective.alpha)" in problems[0] and "refuses it" in problems[1]
