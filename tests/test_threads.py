"""The CPU thread budget (medssl/threads.py): never more threads than cores under
``auto``, explicit settings win, cgroup quotas (v1 and v2) are read, and the ``medssl``
command starts OpenMP with the passive wait policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medssl.errors import ConfigError
from medssl.threads import (
    available_cores,
    cgroup_cpu_limit,
    local_world_size,
    plan_threads,
    SPIN_COUNT,
    prefer_passive_wait,
)

REPO = Path(__file__).resolve().parents[1]


def _v2_tree(tmp_path: Path, limits: dict) -> Path:
    """A fake cgroup v2 mount: ``limits`` maps a group path ('' = root) to cpu.max text."""
    root = tmp_path / "cg"
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for rel, text in limits.items():
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(text + "\n")
    return root


def test_cgroup_v2_quota_is_read_and_the_smallest_ancestor_wins(tmp_path):
    root = _v2_tree(tmp_path, {"": "max 100000", "user": "300000 100000", "user/job": "150000 100000"})
    assert cgroup_cpu_limit(root, "0::/user/job\n") == pytest.approx(1.5)
    root2 = _v2_tree(tmp_path / "b", {"": "max 100000", "a": "50000 100000", "a/b": "max 100000"})
    assert cgroup_cpu_limit(root2, "0::/a/b\n") == pytest.approx(0.5)


def test_cgroup_v2_without_a_limit_is_none(tmp_path):
    root = _v2_tree(tmp_path, {"": "max 100000", "x": "max 100000"})
    assert cgroup_cpu_limit(root, "0::/x\n") is None


def test_cgroup_v2_invisible_group_falls_back_to_the_mount_top(tmp_path):
    # inside a container /proc/self/cgroup names a host path that is not mounted
    root = _v2_tree(tmp_path, {"": "200000 100000"})
    assert cgroup_cpu_limit(root, "0::/kubepods/pod123/abc\n") == pytest.approx(2.0)


def test_cgroup_v1_cfs_quota(tmp_path):
    root = tmp_path / "cg"
    grp = root / "cpu,cpuacct" / "docker" / "c1"
    grp.mkdir(parents=True)
    (grp / "cpu.cfs_quota_us").write_text("250000\n")
    (grp / "cpu.cfs_period_us").write_text("100000\n")
    text = "4:memory:/docker/c1\n3:cpu,cpuacct:/docker/c1\n0::/\n"
    assert cgroup_cpu_limit(root, text) == pytest.approx(2.5)
    (grp / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(root, text) is None


def test_available_cores_is_capped_by_the_quota_and_by_affinity(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    root = _v2_tree(tmp_path, {"": "150000 100000"})
    assert available_cores(root, "0::/\n") == 1  # 1.5 cores rounds down
    root2 = _v2_tree(tmp_path / "b", {"": "1600000 100000"})
    assert available_cores(root2, "0::/\n") == 8  # a quota above the affinity does not add cores
    root3 = _v2_tree(tmp_path / "c", {"": "20000 100000"})
    assert available_cores(root3, "0::/\n") == 1  # never zero


def test_the_real_machine_budget_fits_its_affinity():
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= available_cores() <= affinity


@pytest.mark.parametrize("cores", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 16])
def test_auto_never_exceeds_the_cores_given(cores, ranks):
    plan = plan_threads("auto", env={}, cores=cores, local_ranks=ranks)
    assert plan.threads >= 1
    assert plan.threads * ranks <= max(cores, ranks)  # more ranks than cores: one thread each
    assert plan.threads == max(1, cores // ranks)


def test_auto_splits_cores_between_torchrun_local_ranks():
    env = {"LOCAL_WORLD_SIZE": "4"}
    assert local_world_size(env) == 4
    assert plan_threads("auto", env=env, cores=16).threads == 4
    assert "4 local processes" in plan_threads("auto", env=env, cores=16).describe()


def test_an_explicit_setting_wins_over_the_environment_and_the_cores():
    env = {"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2"}
    plan = plan_threads(6, key="train.threads", env=env, cores=2)
    assert plan.threads == 6 and "train.threads=6" in plan.source


def test_omp_num_threads_wins_over_auto_and_empty_means_unset():
    assert plan_threads("auto", env={"OMP_NUM_THREADS": "3"}, cores=2).threads == 3
    assert plan_threads("auto", env={"OMP_NUM_THREADS": ""}, cores=2).threads == 2


@pytest.mark.parametrize("bad", [0, -2, "four", 1.5, True])
def test_bad_settings_are_named_errors(bad):
    with pytest.raises(ConfigError, match="train.threads must be a positive integer or 'auto'"):
        plan_threads(bad, key="train.threads", env={}, cores=2)


def test_bad_omp_num_threads_is_a_clear_error():
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS='x'.*unset it or set transfer.threads"):
        plan_threads("auto", key="transfer.threads", env={"OMP_NUM_THREADS": "x"}, cores=2)


def test_prefer_passive_wait_keeps_the_users_policy():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    prefer_passive_wait(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"GOMP_SPINCOUNT": "300000"}  # a spin count alone is a choice too
    prefer_passive_wait(env)
    assert env == {"GOMP_SPINCOUNT": "300000"}
    env = {}
    prefer_passive_wait(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPIN_COUNT)}


def test_the_medssl_command_starts_openmp_with_the_passive_policy_after_a_short_spin():
    """OpenMP reads the policy once, when torch loads: the CLI must set it before that."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", PYTHONPATH=str(REPO))
    code = ("import medssl.cli\ntry:\n    medssl.cli.main(['pretrain', '--help'])\nexcept SystemExit:\n    pass\n"
            "import torch\ntorch.ones(64, 64) @ torch.ones(64, 64)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # libgomp prints the policy as PASSIVE even when unset; the spin count tells them apart
    assert f"GOMP_SPINCOUNT = '{SPIN_COUNT}'" in out.stderr, out.stderr[-2000:]
    assert 0 < SPIN_COUNT < 300000  # libgomp's own default spins for milliseconds


def test_the_start_up_line_says_when_the_policy_came_too_late(monkeypatch):
    import torch  # noqa: F401  (loaded: from now on OpenMP's policy is fixed)

    import medssl.threads as threads

    monkeypatch.setattr(threads, "_POLICY_AT_START", None)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)  # an earlier in-process CLI call set both
    assert not prefer_passive_wait()
    line = plan_threads(2, env={}, cores=2).describe()
    assert "2 torch threads (train.threads=2); OpenMP wait policy the OpenMP default" in line
    assert f"set OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT={SPIN_COUNT} before starting Python" in line
    # a second CLI call in the same process must not claim the policy took effect now
    prefer_passive_wait()
    assert "before starting Python" in plan_threads(2, env={}, cores=2).describe()
