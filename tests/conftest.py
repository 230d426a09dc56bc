"""Shared fixtures.

``shared_data`` points at the real data in ``../shared/data`` (see its MANIFEST.md), or
at ``$MEDSSL_SHARED_DATA``; tests that need it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("MEDSSL_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real shared data not found at {SHARED_DATA} (set MEDSSL_SHARED_DATA)")
    return SHARED_DATA


def shared_file(rel: str) -> Path:
    """A file under the shared data folder, or skip the calling test."""
    p = SHARED_DATA / rel
    if not p.is_file():
        pytest.skip(f"real shared data file {p} not found")
    return p


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample (``medssl data sample``, seed 0) written once per session;
    returns its OUT_DIR. Treat it as read-only: other tests share it."""
    from medssl.data.sample import write_sample

    out = tmp_path_factory.mktemp("medssl_sample") / "sample"
    write_sample(out, seed=0)
    return out
