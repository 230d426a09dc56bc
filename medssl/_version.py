"""The package version, in a module of its own so that any layer can read it without
importing the public API facade (:mod:`medssl`), which sits above everything.

Keep it equal to ``[project] version`` in pyproject.toml (tests/test_version.py checks).
"""

__version__ = "0.1.0"
