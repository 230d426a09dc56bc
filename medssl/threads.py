"""How many CPU threads torch may use: the cores this process is given, split between
the local ranks, unless the user said otherwise.

Why this matters on a small or shared CPU: torch's OpenMP threads wait for each other at
the end of every parallel loop, and by default they *spin* (burn the core) for a while
before sleeping. When another process holds one of the cores, the spinning thread keeps
its core busy doing nothing while the thread it waits for is descheduled: on the 2-core
development machine a ResNet-18 step with two threads ran 2-10x slower than with one
under load (docs/benchmarks.md, "Thread budget"). With the *passive* wait policy the
waiting thread sleeps (here after a spin of microseconds, which an idle machine needs
to stay fast), so using every core costs nothing when some are taken.

Two things follow:

* :func:`prefer_passive_wait` sets ``OMP_WAIT_POLICY=PASSIVE`` with a short spin first
  (``GOMP_SPINCOUNT``, :data:`SPIN_COUNT`) unless the user set either -- it only takes
  effect if it runs before torch loads the OpenMP runtime, so the ``medssl`` command
  calls it first thing, before importing torch;
* :func:`plan_threads` picks the number of intra-op threads: an explicit integer setting
  wins, then ``OMP_NUM_THREADS`` from the environment, then ``auto`` = the usable cores
  (:func:`available_cores`: CPU affinity and cgroup CPU quota) divided by the local
  ranks of a torchrun launch (``LOCAL_WORLD_SIZE``).

This module does not import torch at import time (the CLI needs it before torch loads).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, MutableMapping, Optional, Union

from medssl.errors import ConfigError

ThreadSetting = Union[int, str]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux: all logical cores
        return os.cpu_count() or 1


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota_v2(text: Optional[str]) -> Optional[float]:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"max 100000"`` = no limit)."""
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(quota: Optional[str], period: Optional[str]) -> Optional[float]:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 = none)."""
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Optional[str] = None) -> Optional[float]:
    """The CPU quota of this process's cgroup in cores (e.g. ``1.5``), or None if unlimited.

    Reads cgroup v2 (``cpu.max`` of the process's group and of every ancestor: the smallest
    wins) and cgroup v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of the ``cpu``
    controller). ``proc_cgroup`` is the text of ``/proc/self/cgroup`` (read when None).
    Inside a container the group's path is often not visible; the files at the mount's top
    are then the container's own and are read instead.
    """
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    limits = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2: the unified hierarchy
            for base in (root, root / "unified"):
                if not (base / "cgroup.controllers").exists():
                    continue
                group = base / rel
                if not group.is_dir():
                    group = base
                while True:
                    limit = _quota_v2(_read(group / "cpu.max"))
                    if limit is not None:
                        limits.append(limit)
                    if group == base:
                        break
                    group = group.parent
        elif "cpu" in controllers.split(","):
            for name in (controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu"):
                base = root / name
                if base.is_dir():
                    break
            else:
                continue
            group = base / rel if (base / rel).is_dir() else base
            limit = _quota_v1(_read(group / "cpu.cfs_quota_us"), _read(group / "cpu.cfs_period_us"))
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def available_cores(root: Path = CGROUP_ROOT, proc_cgroup: Optional[str] = None) -> int:
    """The cores this process may run on: its CPU affinity, capped by the cgroup CPU quota
    (rounded down: two threads on a 1.5-core quota spend a third of the time throttled at
    a barrier). At least 1."""
    cores = _affinity_cores()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def local_world_size(env: Mapping[str, str] = os.environ) -> int:
    """Processes sharing this machine in a torchrun launch (``LOCAL_WORLD_SIZE``; 1 alone)."""
    try:
        return max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class ThreadPlan:
    """The chosen number of torch intra-op threads and why.

    Attributes:
        threads: intra-op threads for ``torch.set_num_threads``.
        source: where the number came from, for the start-up line.
        cores: the usable cores of this process (:func:`available_cores`).
        local_ranks: processes sharing those cores (torchrun's local world size).
    """

    threads: int
    source: str
    cores: int
    local_ranks: int

    def describe(self) -> str:
        """One line for the log, e.g. ``2 torch threads (auto: 2 usable cores, 1 process; ...)``."""
        return (f"{self.threads} torch thread{'s' if self.threads != 1 else ''} ({self.source}); "
                f"OpenMP wait policy {wait_policy()}")


def plan_threads(setting: ThreadSetting = "auto", key: str = "train.threads",
                 env: Mapping[str, str] = os.environ, cores: Optional[int] = None,
                 local_ranks: Optional[int] = None) -> ThreadPlan:
    """Decide the intra-op thread count.

    Args:
        setting: a positive int (used as is, even above the core count: the user asked)
            or ``"auto"``.
        key: the config key or flag the setting came from (named in errors and the log).
        env: the environment; a non-empty ``OMP_NUM_THREADS`` is an explicit setting and wins
            over ``auto`` (note that torchrun sets it to 1 when it launches several processes
            and it is unset; export ``OMP_NUM_THREADS=`` (empty) to let ``auto`` decide).
        cores, local_ranks: override :func:`available_cores` / :func:`local_world_size`.

    Under ``auto`` the budget never exceeds ``cores // local_ranks`` (at least 1).
    """
    cores = available_cores() if cores is None else cores
    local_ranks = local_world_size(env) if local_ranks is None else local_ranks
    if isinstance(setting, bool) or not (isinstance(setting, int) or setting == "auto"):
        raise ConfigError(f"{key} must be a positive integer or 'auto', got {setting!r}")
    if isinstance(setting, int):
        if setting < 1:
            raise ConfigError(f"{key} must be a positive integer or 'auto', got {setting!r}")
        return ThreadPlan(setting, f"{key}={setting}", cores, local_ranks)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp:
        try:
            n = int(omp.split(",")[0])
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"OMP_NUM_THREADS={omp!r} in the environment is not a positive integer; "
                              f"unset it or set {key}")
        return ThreadPlan(n, f"OMP_NUM_THREADS={n} from the environment", cores, local_ranks)
    n = max(1, cores // local_ranks)
    procs = f"{local_ranks} local processes" if local_ranks > 1 else "1 process"
    return ThreadPlan(n, f"auto: {cores} usable core{'s' if cores != 1 else ''}, {procs}", cores, local_ranks)


def apply_threads(plan: ThreadPlan) -> int:
    """Set torch's intra-op threads to ``plan.threads``; returns the previous number."""
    import torch

    before = torch.get_num_threads()
    if before != plan.threads:
        torch.set_num_threads(plan.threads)
    return before


@contextlib.contextmanager
def thread_budget(setting: ThreadSetting = "auto", key: str = "train.threads",
                  announce: bool = True) -> Iterator[ThreadPlan]:
    """Run a block with torch's intra-op threads set by :func:`plan_threads`, printing the
    choice to stderr (``announce``); the previous count is restored on exit."""
    plan = plan_threads(setting, key)
    before = apply_threads(plan)
    if announce:
        print(f"medssl: {plan.describe()}", file=sys.stderr)
    try:
        yield plan
    finally:
        import torch

        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


_POLICY_AT_START: Optional[str] = None  # the policy OpenMP started with, if known

# Barrier spins before a waiting OpenMP thread sleeps (libgomp's GOMP_SPINCOUNT). libgomp's
# own default, 300,000, burns a core for milliseconds, which is 1.5-1.7x slower on a 2-core
# machine with one other busy process; 0 (the plain passive policy) costs 8-14% on an idle
# machine because every barrier then pays a futex wake-up. A few hundred spins (microseconds)
# keeps both within ~10% of the best manual setting: docs/benchmarks.md, "Thread budget".
SPIN_COUNT = 300


def prefer_passive_wait(env: MutableMapping[str, str] = os.environ) -> bool:
    """Ask OpenMP to sleep soon when threads wait (``OMP_WAIT_POLICY=PASSIVE`` with
    ``GOMP_SPINCOUNT`` = :data:`SPIN_COUNT`, a spin of microseconds before sleeping)
    unless the user chose either variable. Returns whether torch will run with this
    policy: OpenMP reads the variables once, when torch loads, so this must run before
    ``import torch``."""
    global _POLICY_AT_START
    user_set = bool(env.get("OMP_WAIT_POLICY") or env.get("GOMP_SPINCOUNT"))
    if not user_set:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        env["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    started = user_set or "torch" not in sys.modules
    if not started:
        policy = _DEFAULT
    elif user_set:
        policy = (env.get("OMP_WAIT_POLICY") or "default").lower()
        if env.get("GOMP_SPINCOUNT"):
            policy += f", GOMP_SPINCOUNT={env['GOMP_SPINCOUNT']}"
    else:
        policy = f"passive after {SPIN_COUNT} spins"
    if env is os.environ and _POLICY_AT_START is None:  # OpenMP starts once per process
        _POLICY_AT_START = policy
    return policy.startswith("passive")


_DEFAULT = "default"  # libgomp without a policy: spin for a while (GOMP_SPINCOUNT), then sleep


def wait_policy() -> str:
    """The OpenMP wait policy torch runs with, as far as this process can tell: ``passive
    after N spins`` (medssl's choice), what the user set, or the OpenMP default (spin, then
    sleep) with a hint when that is because torch was loaded before medssl could choose."""
    if _POLICY_AT_START == _DEFAULT:
        return ("the OpenMP default, spin then sleep (torch was imported before medssl could choose; set "
                f"OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT={SPIN_COUNT} before starting Python on a shared machine)")
    if _POLICY_AT_START is not None:
        return _POLICY_AT_START
    return os.environ.get("OMP_WAIT_POLICY", "").lower() or "the OpenMP default, spin then sleep"


__all__ = [
    "ThreadPlan",
    "available_cores",
    "cgroup_cpu_limit",
    "local_world_size",
    "plan_threads",
    "apply_threads",
    "thread_budget",
    "prefer_passive_wait",
    "wait_policy",
]


#: The most DataLoader workers ``auto`` starts: beyond this the per-worker memory (each
#: holds a dataset handle and prefetched batches) outweighs the decoding it adds.
MAX_AUTO_WORKERS = 8


def plan_workers(setting: ThreadSetting = "auto", key: str = "train.num_workers",
                 cores: Optional[int] = None, local_ranks: Optional[int] = None) -> "tuple[int, str]":
    """``(DataLoader worker processes, why)``, budgeted like :func:`plan_threads`.

    An explicit integer wins (0 = load in the main process), even above the core count:
    the user asked, and the reason says so. ``auto`` leaves one of this process's cores
    (:func:`available_cores` divided among the local ranks) to the training process and
    gives the rest to workers, at most :data:`MAX_AUTO_WORKERS`: 1 worker on 2 cores, none
    on 1 -- never more than torch's own suggestion, which it warns about on every run."""
    cores = available_cores() if cores is None else cores
    local_ranks = local_world_size() if local_ranks is None else local_ranks
    if isinstance(setting, bool) or not (isinstance(setting, int) or setting == "auto"):
        raise ConfigError(f"{key} must be a non-negative integer or 'auto', got {setting!r}")
    if isinstance(setting, int):
        if setting < 0:
            raise ConfigError(f"{key} must be a non-negative integer or 'auto', got {setting!r}")
        over = f", more than the {cores} usable core(s)" if setting > cores else ""
        return setting, f"{key}={setting}{over}"
    per_rank = max(1, cores // max(1, local_ranks))
    n = min(MAX_AUTO_WORKERS, per_rank - 1)
    return n, f"auto: {per_rank} usable core(s) for this process, one kept for training"
