"""Which floating-point precision a CPU computes the model in: ``auto`` decides by measurement.

bf16 autocast on a CPU is sometimes much faster than float32 and sometimes much slower, on
the same processor: on the 2-core AVX512-BF16 development machine a ResNet-18 step with the
small-input stem at 28 px (batch 128) ran 1.7-1.9x faster in bf16, while the same network
with timm's 7x7 stem at 64 px (batch 32) ran several times slower, because oneDNN runs that
3-input-channel convolution with a slow bf16 kernel (docs/benchmarks.md, "bf16 on a CPU").
No rule of thumb on flags or shapes gets both right, so ``auto`` times a few
forward/backward steps of the actual model at the actual shape in both precisions and keeps
bf16 only when it is faster by :data:`MARGIN` (float32 otherwise). The answer is cached per
machine, model and shape (:func:`cache_file`), so the probe costs a second or a few once.

Without native bf16 (no AVX512-BF16, AMX-BF16 or Arm BF16) nothing is timed: float32.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from medssl.device import cpu_has_native_bf16
from medssl.fileio import atomic_write

# bf16 must be at least this much faster (float32 time / bf16 time) to be chosen: below it
# the gain is within the spread of a loaded 2-core machine, and float32 is the safer default
MARGIN = 1.15
CACHE_ENV = "MEDSSL_CACHE_DIR"
# timed steps per precision (after one untimed warm-up each); alternated so that a change
# of load hits both precisions alike
PROBE_STEPS = 3
# ... but one pair is enough when bf16 is this many times past the margin, either way
CLEAR = 1.25


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` chose on a CPU and why.

    ``dtype`` is ``torch.bfloat16`` or None (float32); ``fp32_s`` / ``bf16_s`` are the median
    seconds of one probed step (None when nothing was timed); ``source`` says where the
    answer came from: ``probe``, ``cache``, ``no-native-bf16`` or ``resumed``.
    """

    dtype: Optional[torch.dtype]
    fp32_s: Optional[float] = None
    bf16_s: Optional[float] = None
    source: str = "probe"

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "float32"

    def describe(self, key: str = "train.amp") -> str:
        """One log line: what was chosen, the two timings and where they came from."""
        if self.source == "no-native-bf16":
            return f"{key}=auto: float32 (this CPU has no native bf16)"
        if self.source == "resumed":
            return f"{key}=auto: {self.name}, the precision the resumed run was trained in"
        speed = self.fp32_s / self.bf16_s if self.fp32_s and self.bf16_s else float("nan")
        origin = "measured now" if self.source == "probe" else f"measured earlier, cached in {cache_file()}"
        return (f"{key}=auto: {self.name} (one step {self.fp32_s * 1000:.0f} ms in float32, "
                f"{self.bf16_s * 1000:.0f} ms in bf16: {speed:.2f}x, {origin}; bf16 needs >= {MARGIN}x; "
                f"{key}=bf16 or off forces it)")


def forced_bf16(key: str, instead: str) -> Optional[torch.dtype]:
    """An explicit ``bf16`` on a CPU: ``torch.bfloat16`` where the CPU computes it natively,
    else None (float32) with a warning naming ``key`` and what runs ``instead``."""
    if cpu_has_native_bf16():
        return torch.bfloat16
    print(f"medssl: warning: {key} is 'bf16' but this CPU has no native bf16 (avx512_bf16, amx_bf16 or Arm bf16); "
          f"{instead}", file=sys.stderr)
    return None


def decide(fp32_s: float, bf16_s: float, margin: float = MARGIN) -> Optional[torch.dtype]:
    """``torch.bfloat16`` when bf16 is at least ``margin`` times faster than float32, else None."""
    if not (fp32_s > 0 and bf16_s > 0):
        return None
    return torch.bfloat16 if fp32_s / bf16_s >= margin else None


def cache_file() -> Path:
    """Where probe results are kept: ``$MEDSSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/medssl``,
    else ``~/.cache/medssl``; the file is ``precision_probe.json``."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "medssl")
    return Path(root) / "precision_probe.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_key(model: torch.nn.Module, shape: Mapping[str, Any]) -> str:
    """The cache key of one probe: this machine (CPU model, bf16 support, threads, torch)
    and the model (every parameter's name and shape) at the input ``shape``."""
    params = ";".join(f"{n}:{tuple(p.shape)}" for n, p in model.named_parameters())
    ident = {
        "cpu": _cpu_model(), "bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "model": type(model).__name__,
        "params": hashlib.sha256(params.encode()).hexdigest()[:16], "shape": dict(shape),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def read_cache() -> Dict[str, Any]:
    """The cached probe results (an empty dict when the file is missing or unreadable)."""
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(key: str, fp32_s: float, bf16_s: float) -> None:
    """Record one probe; a cache that cannot be written only costs a probe next time."""
    data = read_cache()
    data[key] = {"fp32_s": fp32_s, "bf16_s": bf16_s, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True)))
    except OSError as exc:
        print(f"medssl: note: could not cache the precision probe in {path} ({exc}); "
              f"set ${CACHE_ENV} to a writable folder", file=sys.stderr)


def time_steps(step: Callable[[bool], None], steps: int = PROBE_STEPS, clear: float = CLEAR) -> Dict[str, float]:
    """Median seconds of ``step(bf16)`` for ``bf16`` False and True, alternated, after one
    untimed warm-up of each (the first call of a shape builds oneDNN's kernels).

    Stops after the first timed pair when the answer is clear (bf16 ``clear`` times past the
    margin either way), so a probe whose answer is obvious costs four steps, not eight.
    """
    step(False)
    step(True)
    times: Dict[bool, list] = {False: [], True: []}
    for _ in range(steps):
        for bf16 in (False, True):
            start = time.perf_counter()
            step(bf16)
            times[bf16].append(time.perf_counter() - start)
        ratio = statistics.median(times[False]) / max(statistics.median(times[True]), 1e-12)
        if ratio >= MARGIN * clear or ratio <= MARGIN / clear:
            break
    return {"fp32_s": statistics.median(times[False]), "bf16_s": statistics.median(times[True]),
            "pairs": len(times[False])}


def choose_cpu_precision(model: torch.nn.Module, run_step: Callable[[torch.nn.Module, bool], None],
                         shape: Mapping[str, Any], *,
                         timer: Callable[[Callable[[bool], None]], Dict[str, float]] = time_steps,
                         use_cache: bool = True) -> PrecisionChoice:
    """Decide bf16 or float32 for ``model`` on this CPU.

    ``run_step(m, bf16)`` runs one step (forward, and backward when training) of ``m`` at
    the real input shape, under bf16 autocast when ``bf16``; it is given a deep copy of
    ``model`` so the probe changes neither its weights nor its BatchNorm statistics, and it
    must draw its inputs from its own generator (the global RNG stays untouched).
    ``shape`` names that input (sizes, batch, layout) for the cache key. ``timer`` is
    injectable for tests.
    """
    if not cpu_has_native_bf16():
        return PrecisionChoice(None, source="no-native-bf16")
    key = probe_key(model, shape)
    if use_cache:
        hit = read_cache().get(key)
        if isinstance(hit, dict) and {"fp32_s", "bf16_s"} <= set(hit):
            fp32_s, bf16_s = float(hit["fp32_s"]), float(hit["bf16_s"])
            return PrecisionChoice(decide(fp32_s, bf16_s), fp32_s, bf16_s, source="cache")
    twin = copy.deepcopy(model)
    timed = timer(lambda bf16: run_step(twin, bf16))
    del twin
    fp32_s, bf16_s = float(timed["fp32_s"]), float(timed["bf16_s"])
    if use_cache:
        write_cache(key, fp32_s, bf16_s)
    return PrecisionChoice(decide(fp32_s, bf16_s), fp32_s, bf16_s, source="probe")
