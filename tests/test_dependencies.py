"""pyproject.toml's dependencies match what the package imports (both ways for torchvision)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "medssl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("medssl", "__future__")}


def _core_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in project["dependencies"]}


# Modules of optional extras (module -> the extra that installs it): imported lazily, inside
# a function, behind an ImportError that names the extra; never at a module's top.
OPTIONAL_MODULES = {"mlflow": "mlflow"}


def _extras() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _top_level_imports() -> set[str]:
    """Third-party modules imported at some module's top (not inside a function)."""
    found: set[str] = set()
    for path in (ROOT / "medssl").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_optional_extras_are_declared_and_imported_only_inside_functions() -> None:
    assert all(extra in _extras() for extra in OPTIONAL_MODULES.values())
    eager = set(OPTIONAL_MODULES) & _top_level_imports()
    assert not eager, f"modules of optional extras imported at module level: {eager}"


def test_every_third_party_import_of_the_package_is_a_declared_dependency() -> None:
    dists = importlib.metadata.packages_distributions()
    declared = _core_dependencies()
    undeclared = {}
    for module in sorted(_imported_top_level_modules() - set(OPTIONAL_MODULES)):
        names = {_norm(d) for d in dists.get(module, [])}
        if not names & declared:
            undeclared[module] = sorted(names) or ["(not installed)"]
    assert not undeclared, f"imported by medssl but not in [project].dependencies: {undeclared}"


def test_torchvision_is_not_a_core_dependency_and_not_imported() -> None:
    assert "torchvision" not in _core_dependencies()
    assert "torchvision" not in _imported_top_level_modules()
