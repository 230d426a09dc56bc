import re
from pathlib import Path

import medssl
from medssl._version import __version__


def test_version_module_matches_pyproject_and_the_facade():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert declared is not None and declared.group(1) == __version__
    assert medssl.__version__ == __version__
