"""The run directory of a pretraining run: ``config.yaml``, the metrics log and ``history.jsonl``.

Rank 0 alone writes here (checkpoints go through
:class:`~medssl.train.checkpoint_rotation.CheckpointManager`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

from medssl.errors import ConfigError
from medssl.train.metrics_log import MetricsLogger, keep_until, read_jsonl


def open_run_dir(run_dir: Path, config: Dict[str, Any], step: int) -> MetricsLogger:
    """Create ``run_dir``, write ``config.yaml`` and return the metrics logger, with the rows
    logged after ``step`` (the checkpoint resumed from; 0 when starting afresh) forgotten.

    A run killed before its first checkpoint leaves rows for steps it redoes; a resumed
    run redoes the steps after its checkpoint. Unwritable ``run_dir``: ConfigError.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        logger = MetricsLogger(run_dir, enabled=True)
    except OSError as exc:  # a path under a file, a read-only disk, no permission
        raise ConfigError(
            f"cannot write the run directory {run_dir} (out_dir): {exc.strerror or exc}; "
            "choose a writable out_dir"
        ) from exc
    if logger.path.stat().st_size > 0:
        rows = keep_until(read_jsonl(logger.path), step)
        logger.close()
        logger.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        logger = MetricsLogger(run_dir, enabled=True)
    return logger


HISTORY_NAME = "history.jsonl"


def append_history(run_dir: Path, event: str, step: int, changes: Mapping[str, Tuple[Any, Any]],
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
