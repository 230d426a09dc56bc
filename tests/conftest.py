"""Shared fixtures.

``shared_data`` points at the real data in ``../shared/data`` (see its MANIFEST.md), or
at ``$MEDSSL_SHARED_DATA``; tests that need it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]

# The CPU precision probe of ``amp: auto`` caches its timings per machine (medssl.precision):
# the suite keeps its own cache (shared by every test and subprocess of one run) instead of
# the user's ~/.cache/medssl
os.environ.setdefault("MEDSSL_CACHE_DIR", tempfile.mkdtemp(prefix="medssl-test-cache-"))


def _shared_data_dir() -> Path:
    env = os.environ.get("MEDSSL_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


# One reason for every test skipped because the whole folder is absent, so the summary
# folds them into one line (see pytest_terminal_summary below).
NO_SHARED_DATA = f"real data folder {SHARED_DATA} not found (README: Run the tests; set MEDSSL_SHARED_DATA)"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(NO_SHARED_DATA)
    return SHARED_DATA


def shared_file(rel: str) -> Path:
    """A file under the shared data folder, or skip the calling test."""
    if not SHARED_DATA.is_dir():
        pytest.skip(NO_SHARED_DATA)
    p = SHARED_DATA / rel
    if not p.is_file():
        pytest.skip(f"real shared data file {p} not found")
    return p


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skipped tests as one line per reason with a count, instead of pytest's line per
    (file, line, reason): without ../shared/data a hundred tests skip for one reason.
    pyproject's ``-rfExX`` leaves skips out of pytest's own summary for this."""
    reasons: Dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return
    terminalreporter.write_sep("-", f"{sum(reasons.values())} skipped, by reason")
    for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        terminalreporter.write_line(f"SKIPPED [{count}] {reason}")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample (``medssl data sample``, seed 0) written once per session;
    returns its OUT_DIR. Treat it as read-only: other tests share it."""
    from medssl.data.sample import write_sample

    out = tmp_path_factory.mktemp("medssl_sample") / "sample"
    write_sample(out, seed=0)
    return out


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """An existing directory nobody may create files in. ``chmod 555`` does not stop
    root, so as root the directory is made immutable with ``chattr +i`` instead (skip
    when neither works)."""
    d = tmp_path / "read_only"
    d.mkdir()
    immutable = False
    if os.geteuid() == 0:
        if shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("running as root and chattr +i is unavailable: no directory is unwritable to root")
    else:
        d.chmod(0o555)
    try:
        yield d
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(d)], check=False)
        else:
            d.chmod(0o755)
