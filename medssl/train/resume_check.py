"""Which config changes a resumed run may make, and the run's history of them.

A checkpoint carries the config that trained it (``provenance.config``). Resuming with a
config that trains something else -- another dataset, objective, objective parameter,
backbone, optimiser or seed -- would continue the old weights under a new recipe and
rewrite ``config.yaml`` as if the run had always been that recipe. So on resume the two
configs are compared key by key: only :data:`SAFE_ON_RESUME` keys (how long, how often to
log, evaluate and checkpoint, where and how fast it runs) may differ; anything else is
refused with the list of differences, unless the user forces it, and then every change
is appended to ``history.jsonl`` in the run directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from medssl.errors import ConfigError

#: Dotted keys that may change between a run and its resumption: the budget, logging,
#: monitoring and checkpoint cadence, and the machine (workers, device). None of them
#: changes what a training step computes.
SAFE_ON_RESUME = frozenset({
    "train.epochs", "train.max_steps",                              # budget
    "train.log_every", "train.knn_every", "train.knn_k", "val_data",  # logging and monitoring
    "train.ckpt_every", "train.keep_last",                          # checkpoint cadence
    "train.num_workers", "train.device",                            # machine
    "train.resume", "out_dir",                                      # how the resume itself was asked for
})

HISTORY_NAME = "history.jsonl"
_UNSET = "(not set)"

Change = Tuple[Any, Any]


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; lists and scalars are leaves. A
    mapping listed whole in :data:`SAFE_ON_RESUME` (``val_data``) stays one leaf."""
    out: Dict[str, Any] = {}
    for key, value in cfg.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value and dotted not in SAFE_ON_RESUME:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = list(value) if isinstance(value, tuple) else value
    return out


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Dict[str, Change]:
    """Every dotted key whose value differs, as ``{key: (old, new)}`` (``"(not set)"`` for
    a key only one side has), sorted by key."""
    a, b = flatten(old), flatten(new)
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k, _UNSET), b.get(k, _UNSET)) for k in keys if a.get(k, _UNSET) != b.get(k, _UNSET)}


def _show(changes: Mapping[str, Change], limit: int = 8) -> str:
    items = [f"{k}: {o!r} -> {n!r}" for k, (o, n) in changes.items()]
    return "; ".join(items[:limit]) + (f"; ... (+{len(items) - limit} more)" if len(items) > limit else "")


def check_resume(old: Optional[Mapping[str, Any]], new: Mapping[str, Any], *, checkpoint: Path,
                 run_dir: Path, force: bool = False) -> Dict[str, Change]:
    """All changes from the checkpoint's config ``old`` to ``new``.

    Raises:
        ConfigError: a key outside :data:`SAFE_ON_RESUME` changed and ``force`` is false;
            the one-line message lists the differences and the ways forward.
    """
    if old is None:  # a checkpoint from before configs were recorded: nothing to compare
        return {}
    changes = config_changes(old, new)
    unsafe = {k: v for k, v in changes.items() if k not in SAFE_ON_RESUME}
    if unsafe and not force:
        raise ConfigError(
            f"cannot resume {checkpoint}: this config differs from the one the run was trained with in "
            f"{len(unsafe)} key(s) that change what is trained ({_show(unsafe)}). Resume with the run's own "
            f"config ({run_dir / 'config.yaml'}), start a new out_dir, or pass --resume-force to continue "
            f"with the new values (recorded in {run_dir / HISTORY_NAME})"
        )
    return changes


def append_history(run_dir: Path, event: str, step: int, changes: Mapping[str, Change],
                   checkpoint: Optional[Path] = None, forced: bool = False) -> Path:
    """Append one JSON line ``{time, event, step, checkpoint, forced, changes}`` to the run's
    ``history.jsonl`` (created on first use) and return its path."""
    path = Path(run_dir) / HISTORY_NAME
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "event": event,
        "step": int(step),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "forced": bool(forced),
        "changes": {k: {"old": o, "new": n} for k, (o, n) in changes.items()},
    }
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
    return path


__all__ = ["SAFE_ON_RESUME", "HISTORY_NAME", "flatten", "config_changes", "check_resume", "append_history"]
