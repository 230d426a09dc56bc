"""The layer picture of docs/architecture.md, checked on the source (AST, nothing imported).

Every ``import`` / ``from ... import`` of a medssl module counts wherever it stands (module
top, inside a function, under ``TYPE_CHECKING``): a lazy import is still a dependency.
A module may import its own layer and the layers below it, never one above; and no
chain of imports between medssl modules may come back to where it started.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medssl"

# Bottom to top. A module belongs to the longest name prefix listed (so a package's
# ``commands`` module sits with the CLI while the rest of the package sits lower).
# Keep in step with the table in docs/architecture.md.
LAYERS: List[List[str]] = [
    # 0 basics: no medssl import above this line; used by every layer.
    ["medssl._version", "medssl.errors", "medssl.fileio", "medssl.config", "medssl.registry",
     "medssl.tasks", "medssl.device", "medssl.precision", "medssl.threads", "medssl.provenance", "medssl.progress", "medssl.hdf5",
     "medssl.checkpoint_io", "medssl.runlock", "medssl.text", "medssl.memory", "medssl.tracking"],
    # 1-5 the pretraining data flow, files -> dataset -> views -> model -> objective; each
    # step may read the steps before it (DESIGN.md "Data flows one way").
    ["medssl.wsi"],  # slides -> tile shards + manifest (data.wsi_tiles reads them)
    ["medssl.data"],  # datasets (augment.preview draws views of one)
    ["medssl.augment"],  # views; evaluation preprocessing (models.export records it)
    ["medssl.models"],  # backbone, heads, EMA target, ViewOutputs, exported encoders
    ["medssl.objectives"],  # losses read ViewOutputs from models
    # 6 evaluation: embeddings, probes, metrics, reports (train's monitor reuses its kNN)
    ["medssl.eval"],
    # 7 training
    ["medssl.train"],
    # 8 the command line and the public API facade (medssl/__init__ names everything)
    ["medssl", "medssl.__main__", "medssl.cli", "medssl.data.commands", "medssl.augment.commands",
     "medssl.train.commands", "medssl.eval.commands", "medssl.wsi.commands"],
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _target(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """The medssl module an imported dotted name refers to (``from a.b import c``: ``a.b.c``
    when that is a module, else ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "medssl" or name.startswith("medssl."):
                target = _target(name, modules)
                if target is not None and target != module:
                    found.add(target)
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the longest listed prefix of ``module``."""
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0 or (best_len == len("medssl") and module != "medssl"):
        raise KeyError(module)
    return best


def _cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_every_module_has_a_layer():
    unplaced = []
    for module in _modules():
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"add these modules to LAYERS (and docs/architecture.md): {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
              for m, targets in sorted(_graph().items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_medssl_modules():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_lower_layers_read_the_version_without_the_facade():
    # The facade imports nothing heavy today, but anything that imports it sits above
    # every module it names; the version has its own module for that reason.
    graph = _graph()
    assert "medssl._version" in graph["medssl"]
    assert [m for m, targets in graph.items() if "medssl" in targets] == []


# ------------------------------------------------------------------ the checker itself
def test_layer_of_takes_the_longest_prefix():
    assert layer_of("medssl.data.pcam") == LAYERS.index(["medssl.data"])
    assert layer_of("medssl.data.commands") == len(LAYERS) - 1
    assert layer_of("medssl") == len(LAYERS) - 1
    with pytest.raises(KeyError):
        layer_of("medssl.not_placed_anywhere")


def test_cycle_finder_reports_a_cycle_and_accepts_a_dag():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_are_read_wherever_they_stand(tmp_path, monkeypatch):
    pkg = tmp_path / "medssl"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "high.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from medssl import low\n"
        "def f():\n    from ..low import x\n"
        "import medssl.sub\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert _graph()["medssl.sub.high"] == {"medssl.low", "medssl.sub"}
