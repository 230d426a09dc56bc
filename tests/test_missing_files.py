"""Every "no such file" names the absolute path that was looked at.

A relative path (typed, or written in a config) resolves against the working directory,
which is not always where the user thinks; the message must say where medssl looked.
The behaviour is checked for each loader below, and a scan of the source checks that
every message saying a file is missing builds its text with medssl.text's helpers.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from medssl.errors import MedSSLError

PACKAGE = Path(__file__).resolve().parents[1] / "medssl"


def _call(module: str, fn: str, wrap: Callable[[str], Any] = str) -> Callable[[str], Any]:
    """``module.fn(wrap(path))``, imported when called (the table below is built at import)."""
    def load(p: str) -> Any:
        return getattr(importlib.import_module(module), fn)(wrap(p))
    return load


def _dataset(spec: Any) -> Callable[[str], Any]:
    return _call("medssl.data.open", "open_dataset", spec or str)


def _evaluate(p: str) -> Any:
    from medssl.eval.commands import evaluation_data

    return evaluation_data(Path(p))


def _resume(p: str) -> Any:
    from medssl.train.checkpoint_rotation import CheckpointManager
    from medssl.train.resume import find_resume

    return find_resume(p, CheckpointManager(Path("run")))


_load_yaml = _call("medssl.config", "load_yaml")
_checkpoint = _call("medssl.checkpoint_io", "load_checkpoint")
_encoder = _call("medssl.models.export", "load_encoder")
_indices = _call("medssl.eval.subsets", "load_indices")
_slide_labels = _call("medssl.data.wsi_tiles", "read_slide_labels")
_slide = _call("medssl.wsi.slide", "open_slide")
_augment = _call("medssl.augment.preview", "load_augment_spec")
_manifest = _call("medssl.wsi.manifest", "load_manifest", Path)


LOADERS = {
    "config yaml": (_load_yaml, "configs/missing.yaml", "configs/missing.yaml"),
    "checkpoint": (_checkpoint, "runs/x/ckpt.pt", "runs/x/ckpt.pt"),
    "encoder run dir": (_encoder, "runs/stl10", "runs/stl10"),
    "data path": (_dataset(None), "data/nothing", "data/nothing"),
    "pcam root": (_dataset(lambda p: {"name": "pcam", "root": p}), "data/pcam",
                  "data/pcam/camelyonpatch_level_2_split_train_x.h5"),
    "stl10 root": (_dataset(lambda p: {"name": "stl10", "root": p, "split": "train"}), "data/stl10",
                   "data/stl10/train_X.bin"),
    "medmnist root": (_dataset(lambda p: {"name": "medmnist", "root": p, "flag": "pathmnist"}), "data/medmnist",
                      "data/medmnist/pathmnist.npz"),
    "folder csv": (_dataset(lambda p: {"name": "folder", "csv": p}), "lists/images.csv", "lists/images.csv"),
    "folder root": (_dataset(lambda p: {"name": "folder", "root": p}), "own_images", "own_images"),
    "label subset": (_indices, "subsets/seed0.json", "subsets/seed0.json"),
    "slide labels": (_slide_labels, "slides.csv", "slides.csv"),
    "slide": (_slide, "slides/a.svs", "slides/a.svs"),
    "augment config": (_augment, "aug.yaml", "aug.yaml"),
    "tiling manifest": (_manifest, "tiles", "tiles/manifest.json"),
    "resume checkpoint": (_resume, "runs/x/step_10.pt", "runs/x/step_10.pt"),
    "evaluate run dir": (_evaluate, "runs/demo", "runs/demo/config.yaml"),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_missing_file_message_names_the_absolute_path(name: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    load, given, looked = LOADERS[name]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MedSSLError) as err:
        load(given)
    assert str(tmp_path / looked) in str(err.value), str(err.value)


def test_a_missing_absolute_path_is_named_once(tmp_path: Path) -> None:
    from medssl.text import no_such_file

    msg = no_such_file("checkpoint", tmp_path / "c.pt")
    assert msg == f"checkpoint {tmp_path / 'c.pt'} not found"
    rel = no_such_file("checkpoint", "c.pt", "run it first")
    assert rel == f"checkpoint c.pt not found (looked at {os.path.abspath('c.pt')}, relative to the " \
                  "working directory); run it first"


MISSING_WORDS = ("not found", "no such", "does not exist")
HELPERS = {"no_such_file", "looked_at", "abspath", "resolve", "require_file"}


def _raise_messages() -> list:
    """(file:line, names used) for each `raise X(...)` whose text says a file is missing."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call):
                continue
            text = " ".join(c.value for c in ast.walk(node.exc) if isinstance(c, ast.Constant)
                            and isinstance(c.value, str)).lower()
            if not any(w in text for w in MISSING_WORDS) or "file" not in text and "path" not in text:
                continue
            names = {n.id for n in ast.walk(node.exc) if isinstance(n, ast.Name)} | {
                n.attr for n in ast.walk(node.exc) if isinstance(n, ast.Attribute)}
            out.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", names))
    return out


def test_every_missing_file_message_uses_the_helpers() -> None:
    found = _raise_messages()
    assert len(found) >= 3  # the scan sees the messages that spell it out themselves
    assert [where for where, names in found if not names & HELPERS] == []
    calls = sum(src.count("no_such_file(") for src in (p.read_text() for p in PACKAGE.rglob("*.py")))
    assert calls >= 9  # and those built by no_such_file
