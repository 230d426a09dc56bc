"""The thread budget: ``medssl pretrain`` with its default threads against manual settings,
on the machine as it is and with one extra process spinning on a core.

Each run is a fresh ``python -m medssl pretrain CONFIG`` (OpenMP reads its settings when
torch loads, so they cannot change inside one process) with kNN monitoring and
checkpoints off. Settings:

* ``default``   -- nothing set: medssl's choice (``train.threads: auto``, passive waits);
* ``1 thread``  -- ``OMP_NUM_THREADS=1`` (the usual manual fix on a shared machine);
* ``N threads`` -- ``OMP_NUM_THREADS=<cores>``, the same count as ``auto`` here;
* ``spin``      -- ``OMP_NUM_THREADS=<cores> GOMP_SPINCOUNT=300000``: libgomp's default
  spin-then-sleep wait, i.e. how medssl ran before it chose the passive policy.

Runs are interleaved (one of each setting per round, ``--rounds`` rounds) so that load
changes hit every setting alike; the load average is recorded with every run. ``demo`` is
``configs/demo.yaml`` on a fresh ``medssl data sample`` (whole command time, as a user
sees it); ``bloodmnist`` is ``configs/bloodmnist.yaml`` on the real BloodMNIST file for
``--steps`` steps (images/s of the steps, from the run's metrics); ``step`` is the demo's
model step alone (pNNCLR, ResNet-18, 64 px, batch 32, random images, Adam; images/s of
``--steps`` steps after 2 warm-up steps, in a fresh process per run).

    python scripts/bench_threads.py --configs demo bloodmnist --rounds 2 --load none busy
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, load_average, median, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BLOODMNIST = REPO.parent / "shared" / "data" / "medmnist"
_BUSY = "while True:\n    pass\n"


def settings(cores: int, spincounts: Sequence[int] = ()) -> Dict[str, Dict[str, str]]:
    """Environment additions per setting (OMP_* variables are removed first); each of
    ``spincounts`` adds a ``spincount N`` setting (default threads, libgomp spins N times
    at a barrier before it sleeps)."""
    out = {
        "default": {},
        "1 thread": {"OMP_NUM_THREADS": "1"},
        f"{cores} threads": {"OMP_NUM_THREADS": str(cores)},
        "spin (before)": {"OMP_NUM_THREADS": str(cores), "GOMP_SPINCOUNT": "300000"},
    }
    out.update({f"spincount {n}": {"GOMP_SPINCOUNT": str(n)} for n in spincounts})
    return out


def _env(extra: Dict[str, str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def step_worker(steps: int) -> None:
    """Time ``steps`` demo-sized pNNCLR model steps in this process; prints images/s."""
    import torch
    import torch.nn.functional as F

    from medssl.models import build_backbone, build_ssl_model
    from medssl.objectives.support_set import SupportSet
    from medssl.registry import OBJECTIVES

    from medssl.threads import apply_threads, plan_threads

    apply_threads(plan_threads("auto"))  # as train.threads: auto does
    torch.manual_seed(0)
    objective = OBJECTIVES.build({"name": "pnnclr"})
    model = build_ssl_model(build_backbone("resnet18", image_size=64, small_input_stem=False), objective,
                            proj_hidden=512, proj_dim=128, pred_hidden=512).train()
    support = SupportSet(104, 128)
    support.enqueue(F.normalize(torch.randn(104, 128), dim=1))
    opt = torch.optim.Adam(list(model.online_parameters()), lr=1e-3)
    views = [torch.rand(32, 3, 64, 64) for _ in range(2)]
    index = torch.arange(32)

    def step(i: int) -> None:
        loss, _ = objective(model(views, indices=index), support)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_target(i, 1000)

    step(0)
    step(1)
    start = time.perf_counter()
    for i in range(steps):
        step(i + 2)
    print(f"{32 * steps / (time.perf_counter() - start):.3f}")


def run_step(steps: int, extra_env: Dict[str, str], timeout: float) -> Dict[str, float]:
    """One fresh process running :func:`step_worker` under ``extra_env``."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        # started as the medssl command starts: the wait policy chosen before torch loads
        code = ("import sys; from medssl.threads import prefer_passive_wait; prefer_passive_wait(); "
                f"sys.argv = [{__file__!r}, '--worker', '{steps}']; import runpy; "
                f"runpy.run_path({__file__!r}, run_name='__main__')")
        proc = subprocess.run([sys.executable, "-c", code], env=_env(extra_env),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": float("nan"), "img_s": float("nan"), "load": load}
    if proc.returncode != 0:
        raise SystemExit(f"step worker failed:\n{proc.stderr[-3000:]}")
    return {"seconds": time.perf_counter() - start, "img_s": float(proc.stdout.split()[-1]), "load": load}


def run_once(config: str, overrides: Sequence[str], extra_env: Dict[str, str], work: Path,
             timeout: float) -> Dict[str, float]:
    """One ``medssl pretrain``; returns wall seconds, steady images/s and the load."""
    out_dir = Path(tempfile.mkdtemp(dir=work))
    cmd = [sys.executable, "-m", "medssl", "pretrain", config, f"out_dir={out_dir}", "--no-progress",
           "train.knn_every=0", "train.ckpt_every=100000", "train.log_every=1", *overrides]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=_env(extra_env), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": float("nan"), "img_s": float("nan"), "load": load}
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "images_per_s" in r]
    return {"seconds": seconds, "img_s": float(rows[-1]["images_per_s"]), "load": load}


def bench(name: str, config: str, overrides: Sequence[str], args: argparse.Namespace, work: Path,
          load: str) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    envs = {k: v for k, v in settings(cores, args.spincounts).items()
            if args.settings is None or k.split()[0] in args.settings}
    busy: Optional[subprocess.Popen] = None
    if load == "busy":
        busy = subprocess.Popen([sys.executable, "-c", _BUSY])
    results: Dict[str, List[Dict[str, float]]] = {k: [] for k in envs}
    try:
        for r in range(args.rounds):
            for label, extra in envs.items():
                res = (run_step(args.steps, extra, args.timeout) if name == "step"
                       else run_once(config, overrides, extra, work, args.timeout))
                results[label].append(res)
                print(f"  [{name}, {load}, round {r}] {label}: {res['seconds']:.1f} s, "
                      f"{res['img_s']:.1f} img/s (load {res['load']:.1f})", file=sys.stderr, flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    key = "seconds" if name == "demo" else "img_s"
    meds = {k: median([x[key] for x in v]) for k, v in results.items()}
    best = min(meds.values()) if key == "seconds" else max(meds.values())
    rows = []
    for label, v in results.items():
        loads = [x["load"] for x in v]
        vs_best = (meds[label] / best) if key == "seconds" else (best / meds[label] if meds[label] else float("inf"))
        rows.append([label, f"{meds[label]:.1f}", " / ".join(f"{x[key]:.1f}" for x in v),
                     f"{vs_best:.2f}x", f"{min(loads):.1f}-{max(loads):.1f}"])
    unit = "whole command (s)" if key == "seconds" else "steps (img/s)"
    what = "extra busy process on one core" if load == "busy" else "no extra process"
    return (f"\n### {name}, {what}\n\n"
            + table(["setting", f"median {unit}", "runs", "slowdown vs best", "load average"], rows) + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["demo", "bloodmnist"], choices=["demo", "bloodmnist", "step"])
    p.add_argument("--load", nargs="+", default=["none", "busy"], choices=["none", "busy"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=6, help="bloodmnist steps per run")
    p.add_argument("--bloodmnist-batch", type=int, default=256)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a run counts as failed (nan)")
    p.add_argument("--settings", nargs="+", default=None,
                   help="first word of the settings to run (default, 1, <cores>, spin); default all")
    p.add_argument("--spincounts", nargs="+", type=int, default=[],
                   help="also run these GOMP_SPINCOUNT values (select them with --settings spincount)")
    p.add_argument("--smoke", action="store_true", help="tiny run for the tests: demo, 1 step, 1 round")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        step_worker(args.worker)
        return
    if args.smoke:
        args.configs, args.load, args.rounds, args.settings = ["demo"], ["none"], 1, ["default", "1"]
    print(header("Thread budget: medssl pretrain default vs manual threads"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = []
        for name in args.configs:
            if name == "demo":
                sample = work / "sample"
                subprocess.run([sys.executable, "-m", "medssl", "data", "sample", str(sample)], env=_env({}),
                               check=True, capture_output=True)
                overrides = [f"data.root={sample / 'pcam'}", f"val_data.root={sample / 'pcam'}"]
                if args.smoke:
                    overrides += ["train.max_steps=1", "augment.image_size=32"]
                config = str(REPO / "configs" / "demo.yaml")
            elif name == "step":
                overrides, config = [], ""
            else:
                overrides = [f"data.root={BLOODMNIST}", f"val_data.root={BLOODMNIST}",
                             f"train.max_steps={args.steps}", f"train.batch_size={args.bloodmnist_batch}"]
                config = str(REPO / "configs" / "bloodmnist.yaml")
            for load in args.load:
                out.append(bench(name, config, overrides, args, work, load))
        print("".join(out))
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
