"""Memory a setting needs, checked against what the machine has before anything is allocated.

A size typed one order of magnitude wrong (``model.proj_hidden=10**12``,
``augment.image_size=100000``) used to reach the allocator, which answered with a C++
traceback (``DefaultCPUAllocator: can't allocate memory``) or OpenCV's ``Insufficient
memory`` from deep inside a dependency. :func:`check_allocation` compares a lower-bound
estimate with the memory available to this process (``MemAvailable``, capped by the
cgroup's limit) and refuses in one line; :func:`is_allocation_failure` and
:func:`cannot_allocate_message` turn an allocation that no estimate caught into the same
kind of line at the CLI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from medssl.errors import ConfigError

GB = 1e9


def _meminfo_available(text: Optional[str]) -> Optional[int]:
    """``MemAvailable`` of a ``/proc/meminfo`` text, in bytes."""
    match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text or "", re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def available_bytes() -> Optional[int]:
    """Memory this process may still allocate, in bytes: ``MemAvailable`` capped by the
    cgroup v2 (``memory.max`` - ``memory.current``) or v1 limit; None when unknown."""
    found = [_meminfo_available(_read("/proc/meminfo"))]
    limit, used = _read("/sys/fs/cgroup/memory.max"), _read("/sys/fs/cgroup/memory.current")
    if limit is None:
        limit, used = (_read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                       _read("/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    try:
        if limit is not None and limit.strip() != "max" and used is not None:
            found.append(max(0, int(limit) - int(used)))
    except ValueError:
        pass
    known = [v for v in found if v is not None]
    return min(known) if known else None


def check_allocation(nbytes: float, what: str, advice: str, available: Optional[int] = None) -> None:
    """ConfigError ``cannot allocate N GB for WHAT ...; ADVICE`` when ``nbytes`` is more
    than the memory available (``available``, default :func:`available_bytes`)."""
    free = available_bytes() if available is None else available
    if free is None or nbytes <= free:
        return
    raise ConfigError(f"cannot allocate {nbytes / GB:,.1f} GB for {what}: this machine has "
                      f"{free / GB:,.1f} GB available; {advice}")


_ALLOCATION_PATTERNS = ("can't allocate memory", "DefaultCPUAllocator", "out of memory", "Insufficient memory",
                        "Failed to allocate", "std::bad_alloc", "Cannot allocate memory")


def is_allocation_failure(exc: BaseException) -> bool:
    """A dependency's way of saying an allocation failed (torch's CPU allocator or CUDA,
    OpenCV, numpy): MemoryError, or an error whose text says so."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return any(p in text for p in _ALLOCATION_PATTERNS)


def cannot_allocate_message(exc: BaseException) -> str:
    """One line for an allocation that failed: the size when the library named it."""
    match = re.search(r"allocate (\d+) bytes", str(exc)) or re.search(r"(\d{6,}) bytes", str(exc))
    size = f"{int(match.group(1)) / GB:,.1f} GB" if match else "the memory it needed"
    return (f"cannot allocate {size}: the machine ran out of memory ({type(exc).__name__}). Lower the sizes in the "
            "config (model.proj_hidden / pred_hidden, augment.image_size, train.batch_size, support_set.size) "
            "or use a machine with more memory")
