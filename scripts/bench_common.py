"""Helpers shared by the peer benchmarks (``scripts/bench_*.py``): machine/load lines,
interleaved timing and Markdown tables. Not part of the medssl package."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. ``"1.52 1.80 2.10"`` (``"n/a"`` off Unix)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _mem_total_gib() -> str:
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        return f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "? GiB"


def machine_line() -> str:
    """One line naming the machine: CPU cores, RAM, GPU (or none), torch version."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()}-core CPU ({platform.machine()}), {_mem_total_gib()} RAM, {gpu}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def header(title: str) -> str:
    """The lines printed before a benchmark's tables: title, date, machine, load."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"# {title}\n\ndate: {now}\nmachine: {machine_line()}\nload average at start: {load_average()}\n"


def interleaved(fns: Dict[str, Callable[[], object]], reps: int, warmup: int = 1,
                sync: Callable[[], None] | None = None) -> Dict[str, List[float]]:
    """Seconds per call of each function, run round-robin ``reps`` times after ``warmup``
    rounds, so that load changes on a shared machine hit every contender alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            if sync:
                sync()
            start = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (first column left-aligned, the rest right-aligned)."""
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
