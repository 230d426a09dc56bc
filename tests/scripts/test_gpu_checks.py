"""scripts/gpu_checks.sh: its default quality groups name plans and rows that exist, so a
GPU lease (minutes, rationed) is not lost to a misspelt row; the script parses."""

from __future__ import annotations

import shlex
import subprocess
from types import ModuleType

import pytest

from conftest import REPO
from scripts.test_bench_quality_smoke import load

SCRIPT = REPO / "scripts" / "gpu_checks.sh"


def default_quality_runs() -> list[str]:
    text = SCRIPT.read_text()
    start = text.index('QUALITY_RUNS=${QUALITY_RUNS:-"') + len('QUALITY_RUNS=${QUALITY_RUNS:-"')
    return [line for line in text[start:text.index('"}', start)].splitlines() if line.strip()]


def test_the_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def bq() -> ModuleType:
    return load()


@pytest.mark.parametrize("line", default_quality_runs())
def test_every_default_quality_group_names_a_plan_and_its_rows(bq: ModuleType, line: str) -> None:
    args = bq.parse_args(shlex.split(line))
    rows = {r.name for r in bq.PLANS[args.plan]}
    assert set(args.rows or ()) <= rows, f"{sorted(set(args.rows) - rows)} not in plan {args.plan}"
    assert args.jobs >= 1 and args.steps and args.seeds
