"""Class names with a comma and a pipe (legal folder names) through `medssl data info`,
`medssl transfer` (report.md, predictions.csv) and `medssl report`."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import List

import pytest
import torch

from medssl.cli import main
from medssl.models.backbone import build_backbone
from medssl.models.export import export_encoder
from test_text import md_cells, split_list

# legal folder names; the folder dataset sorts its class folders, so this is class 0, 1, 2
NAMES = ['"atypical"; see note', "malignant|high grade", "normal, benign"]


@pytest.fixture(scope="module")
def awkward_folder(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{train,test}/<awkward class>/*.png from the sample's real IHC tiles."""
    root = tmp_path_factory.mktemp("awkward")
    sources = [sorted((sample_dir / "folder" / c).glob("*.png"))
               for c in ("background", "dab_negative_tissue", "dab_positive")]
    for name, files in zip(NAMES, sources):
        for split, chunk in (("train", files[:8]), ("test", files[8:13])):
            (root / split / name).mkdir(parents=True)
            for f in chunk:
                shutil.copy(f, root / split / name / f.name)
    return root


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("enc")
    torch.manual_seed(0)
    export_encoder(build_backbone("test_resnet", image_size=32), run / "encoder.safetensors", backbone="test_resnet",
                   in_chans=3, image_size=32, small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)
    return run


def test_data_info_line_reads_back(awkward_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", str(awkward_folder), "--no-checksum"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("labels:")]
    assert lines
    for line in lines:
        entries = split_list(line.split("labels:", 1)[1].strip())
        assert [e.rsplit(" ", 1)[0] for e in entries] == NAMES, line
        assert all(e.rsplit(" ", 1)[1].isdigit() for e in entries)


def test_transfer_outputs_keep_the_names(awkward_folder: Path, encoder: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    assert main(["transfer", "--encoder", str(encoder), "--data", str(awkward_folder), "--protocol", "knn",
                 "--seeds", "2", "--label-fraction", "0.5", "--out", str(out), "--no-plots", "--no-progress",
                 "report.n_boot=20"]) == 0
    md = (out / "report.md").read_text().splitlines()
    per_class = [md_cells(ln) for ln in md if ln.startswith("| ") and md_cells(ln)[0] in NAMES]
    assert [r[0] for r in per_class] == NAMES and all(len(r) == 5 for r in per_class)
    head = next(i for i, ln in enumerate(md) if ln.startswith("| Class |"))
    assert len(md_cells(md[head])) == 5
    task = next(ln for ln in md if ln.startswith("Task:"))
    listed = re.search(r"\d+ classes: (.*?); class names", task).group(1)
    assert split_list(listed) == NAMES

    with (out / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["true_class"] for r in rows} == set(NAMES) and {r["predicted_class"] for r in rows} <= set(NAMES)
    assert [k for k in rows[0] if k.startswith("score_")] == [f"score_{n}" for n in NAMES]
    for r in rows:
        assert r["true_class"] == NAMES[int(r["true_label"])]

    # the AUC recipe report.md prints runs as Python and gives the report's AUC
    recipe = "\n".join(md[md.index("```python") + 1:md.index("```", md.index("```python") + 1)])
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    import contextlib
    import io
    import os

    cwd = os.getcwd()
    os.chdir(out)
    try:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(recipe, "recipe", "exec"), {})
    finally:
        os.chdir(cwd)
    rep = json.loads((out / "report.json").read_text())
    assert float(buf.getvalue()) == pytest.approx(rep["per_seed"][0]["metrics"]["auc"], abs=1e-12)

    compare = tmp_path / "compare.md"
    (tmp_path / "a|b").mkdir()
    shutil.copy(out / "report.json", tmp_path / "a|b" / "report.json")
    assert main(["report", str(out), str(tmp_path / "a|b"), "--out", str(compare)]) == 0
    rows_md = [md_cells(ln) for ln in compare.read_text().splitlines() if ln.startswith("| ")]
    assert len({len(r) for r in rows_md}) == 1 and rows_md[2][0] == "a|b"
