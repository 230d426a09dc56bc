"""The run directory of a pretraining run: ``config.yaml``, the metrics log and ``history.jsonl``.

Rank 0 alone writes here (checkpoints go through
:class:`~medssl.train.checkpoint_rotation.CheckpointManager`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from medssl.errors import ConfigError
from medssl.fileio import atomic_write, atomic_write_text, check_inside
from medssl.train.checkpoint_rotation import CheckpointManager
from medssl.train.metrics_log import RESUME_ADVICE, MetricsLogger, keep_until, read_jsonl


def open_run_dir(run_dir: Path, config: Dict[str, Any], step: int) -> MetricsLogger:
    """Create ``run_dir``, write ``config.yaml`` and return the metrics logger, with the rows
    logged after ``step`` (the checkpoint resumed from; 0 when starting afresh) forgotten.

    A run killed before its first checkpoint leaves rows for steps it redoes; a resumed
    run redoes the steps after its checkpoint. Unwritable ``run_dir``: ConfigError.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a path under a file, a read-only disk, no permission
        raise ConfigError(
            f"cannot write the run directory {run_dir} (out_dir): {exc.strerror or exc}; "
            "choose a writable out_dir"
        ) from exc
    # Rewritten whole, never in place: a full disk mid-write keeps the previous config.yaml.
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False), "the run's config",
                      RESUME_ADVICE)
    metrics = check_inside(run_dir / "metrics.jsonl", run_dir, "the metrics log")
    if metrics.is_file() and metrics.stat().st_size > 0:
        rows = keep_until(read_jsonl(metrics), step)
        atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in rows), "the metrics log", RESUME_ADVICE)
    try:
        return MetricsLogger(run_dir, enabled=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {run_dir} (out_dir): {exc.strerror or exc}; "
                          "choose a writable out_dir") from exc



def check_fresh_start(run_dir: Path, ckpts: CheckpointManager, asked_to_resume: bool, overwrite: bool) -> None:
    """Called when a run finds no checkpoint to resume from, before anything is written.

    A directory holding a finished run's ``encoder.safetensors`` (its checkpoints pruned
    to save space) or another run's checkpoints is never trained over without
    ``overwrite`` (their checkpoints are then removed, so rotation cannot keep a stale
    one as the newest); ``--resume`` (``asked_to_resume``) there stops too. Where nothing
    would be lost -- a run stopped before its first checkpoint, or no run yet (job scripts
    that always pass ``--resume``) -- ``--resume`` starts from step 0 and says so on
    stderr. ConfigError otherwise, naming the directory and what to do.
    """
    encoder = run_dir / "encoder.safetensors"
    old = ckpts.all()
    if overwrite:
        for p in old:
            p.unlink()
        return
    if old:
        raise ConfigError(f"{run_dir} already holds checkpoints of another run ({old[-1].name}). Pass --resume to "
                          "continue it, --overwrite to replace it, or choose another out_dir")
    if encoder.exists():
        if asked_to_resume:
            raise ConfigError(f"--resume: {run_dir} holds a finished run's {encoder.name} but no checkpoint to resume "
                              f"from ({ckpts.dir} is empty or missing); nothing was changed. Pass --overwrite "
                              "(without --resume) to train a new run into it, or choose another out_dir")
        raise ConfigError(f"{run_dir} holds the exported encoder of a finished run ({encoder.name}); a new run would "
                          "replace it and its metrics. Choose another out_dir, or pass --overwrite to replace it")
    if asked_to_resume:
        why = ("the run there stopped before its first checkpoint" if (run_dir / "config.yaml").is_file()
               else "no run there yet")
        print(f"medssl: --resume: no checkpoint in {ckpts.dir} to resume from ({why}); starting a new run "
              "from step 0", file=sys.stderr)


def check_resume_target(run_dir: Path, ckpts: CheckpointManager, resume: Path, overwrite: bool) -> None:
    """A checkpoint from elsewhere (``train.resume: PATH``) continued into ``run_dir`` must
    not overwrite a finished run or another run's checkpoints there unless ``overwrite``."""
    import os

    if overwrite or os.path.realpath(resume.parent) == os.path.realpath(ckpts.dir):
        return
    own = ckpts.all()
    if own or (run_dir / "encoder.safetensors").exists():
        what = f"checkpoints of its own run ({own[-1].name})" if own else "a finished run's encoder.safetensors"
        raise ConfigError(f"train.resume points at {resume}, outside {run_dir}, which holds {what}; continuing "
                          "there would overwrite it. Choose another out_dir, or pass --overwrite")


def _schema_keys(cls: type, prefix: str = "") -> List[str]:
    """Every dotted key of the dataclass schema ``cls`` (free-form sections count as one)."""
    keys: List[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        keys.append(dotted)
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _schema_keys(hints[f.name], dotted + ".")
    return keys


def read_run_config(run_dir: Path) -> Dict[str, Any]:
    """The ``config.yaml`` of a pretraining run directory, refused when it cannot be trusted.

    medssl writes every key of the schema there (atomically), so a file that does not
    parse, is not a mapping, lacks a key (torn by an old in-place write on a full disk, or
    cut by hand) or fails validation is a ConfigError naming the file and the keys, never
    read with defaults in place of the lost values. A ``config.yaml`` that is a link out
    of the run directory is refused too."""
    from medssl.config import load_yaml
    from medssl.train.config import PretrainConfig, load_pretrain_config

    f = check_inside(Path(run_dir) / "config.yaml", run_dir, "the run's config")
    advice = ("restore it from a copy of the config the run was trained with (its checkpoints carry it as "
              "provenance.config), or pass the encoder file itself")
    try:
        raw = load_yaml(f)
    except ConfigError as exc:
        raise ConfigError(f"the run's config is damaged: {exc}; {advice}") from exc
    present = set()

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            present.add(prefix + str(k))
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")

    walk(raw, "")
    missing = [k for k in _schema_keys(PretrainConfig) if k not in present]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise ConfigError(f"{f} lacks {len(missing)} key(s) medssl writes there ({shown}): it is torn or was cut "
                          f"by hand, so its values cannot be trusted; {advice}")
    load_pretrain_config(f)  # types and ranges, naming the key
    return raw


HISTORY_NAME = "history.jsonl"


def append_history(run_dir: Path, event: str, step: int, changes: Mapping[str, Tuple[Any, Any]],
                   checkpoint: Optional[Path] = None, forced: bool = False) -> Path:
    """Append one JSON line ``{time, event, step, checkpoint, forced, changes}`` to the run's
    ``history.jsonl`` (created on first use) and return its path."""
    path = check_inside(Path(run_dir) / HISTORY_NAME, run_dir, "the run history")
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "event": event,
        "step": int(step),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "forced": bool(forced),
        "changes": {k: {"old": o, "new": n} for k, (o, n) in changes.items()},
    }
    old = path.read_bytes() if path.is_file() else b""  # kept byte for byte, whatever it holds
    if old and not old.endswith(b"\n"):
        old += b"\n"
    line = (json.dumps(record, default=str) + "\n").encode("utf-8")
    return atomic_write(path, lambda tmp: tmp.write_bytes(old + line), "the run history", RESUME_ADVICE)
