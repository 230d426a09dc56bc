"""The documented recipe chains, run end to end at toy scale on the embedded sample.

Each command is taken verbatim from its document (tests/doc_recipes.py) and run in a
fresh working directory where ``data/<format>`` is the embedded sample, with toy-scale
overrides appended (tiny model, two steps, one seed): the paths that connect the steps
are the documented ones, so a recipe whose second command cannot find what the first
wrote fails here as it would for a user.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

import doc_recipes as dr
from medssl.cli import main


def _run_chain(commands: List[dr.Command], sample_dir: Path, cwd: Path) -> List[str]:
    dr.toy_data_dir(sample_dir, cwd)
    ran = []
    for c in commands:
        args = dr.medssl_argv(c.argv)
        if args is None or args[:2] == ["data", "sample"]:  # the sample is already there
            continue
        argv = dr.toy_argv(args, cwd)
        assert main(argv) == 0, f"{c.source}: medssl {' '.join(argv)}"
        ran.append(" ".join(args[:2]))
    return ran


def _block(doc: str, first: str) -> List[dr.Command]:
    """The commands of the ```bash block of ``doc`` whose first command starts with ``first``."""
    cmds = dr.doc_recipes([doc])[doc]
    starts = [i for i, c in enumerate(cmds) if " ".join(c.argv).startswith(first)]
    assert starts, f"{doc}: no recipe starting with {first!r}"
    block = cmds[starts[0]].source.rsplit(":", 1)[0]
    line = int(cmds[starts[0]].source.rsplit(":", 1)[1])
    # the block ends where the line numbers jump (the next block)
    out = [cmds[starts[0]]]
    for c in cmds[starts[0] + 1:]:
        n = int(c.source.rsplit(":", 1)[1])
        if c.source.rsplit(":", 1)[0] != block or n > line + 1:
            break
        out.append(c)
        line = n
    return out


def test_stl10_to_medical_recipe_runs(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/transfer.md, "The STL-10 → medical recipe": pretrain, three transfers, report."""
    monkeypatch.chdir(tmp_path)
    ran = _run_chain(_block("docs/transfer.md", "medssl pretrain configs/stl10.yaml"), sample_dir, tmp_path)
    assert ran == ["pretrain configs/stl10.yaml"] + ["transfer configs/transfer/stl10_to_"
                                                     f"{t}.yaml" for t in ("pcam", "pathmnist", "bloodmnist")] + \
        ["report runs/stl10_to_pcam_linear"]
    for target in ("pcam", "pathmnist", "bloodmnist"):
        rep = json.loads((tmp_path / "runs" / f"stl10_to_{target}_linear" / "report.json").read_text())
        assert Path(rep["encoder"]["path"]).parent.name == "stl10_pnnclr"


def test_transfer_quick_start_runs(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/transfer.md's first block: demo pretraining, transfer, kNN, evaluate, embed, report."""
    monkeypatch.chdir(tmp_path)
    ran = _run_chain(_block("docs/transfer.md", "medssl data sample"), sample_dir, tmp_path)
    assert [r.split()[0] for r in ran] == ["pretrain", "transfer", "transfer", "evaluate", "embed", "report"]
    assert (tmp_path / "runs" / "compare.md").is_file() and (tmp_path / "runs" / "feats.npz").is_file()


def test_sample_demo_config_examples_run(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """configs/transfer/sample_demo.yaml's header: the demo pretraining it names, then its
    two example commands (linear, then kNN into its own out)."""
    monkeypatch.chdir(tmp_path)
    config = dr.REPO / "configs" / "transfer" / "sample_demo.yaml"
    cmds = dr.config_recipe(config)
    assert len(cmds) == 2
    pretrain = dr.split_commands("medssl pretrain configs/demo.yaml", "configs/transfer/sample_demo.yaml", 2)
    ran = _run_chain(pretrain + cmds, sample_dir, tmp_path)
    assert [r.split()[0] for r in ran] == ["pretrain", "transfer", "transfer"]
    for out, protocol in (("demo_transfer", "linear"), ("demo_transfer_knn", "knn")):
        rep = json.loads((tmp_path / "runs" / out / "report.json").read_text())
        assert rep["protocol"]["name"] == protocol
