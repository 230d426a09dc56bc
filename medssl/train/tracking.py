"""A pretraining run in MLflow (``tracking.mlflow_uri``): what is logged, and when.

At the start (rank 0): params from the resolved config (dotted keys, as in config.yaml),
tags for the git commit, the objective, the run directory and the data fingerprints
(``medssl.data_fingerprint``: sha256 of every training/validation file's size and
head-and-tail hash, as recorded in checkpoints; ``medssl.data_file.N`` for the first 20).
During the run: every metrics row of metrics.jsonl. At the end: config.yaml,
history.jsonl, metrics.csv, the plots and the exported encoder (encoder.safetensors and
encoder.json) as artifacts; the run ends FINISHED, KILLED (stopped by a signal; the resume
continues it) or FAILED. A tracking server that fails mid-run costs a warning, not the run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from medssl.tracking import MLflowRun
from medssl.train.config import PretrainConfig
from medssl.train.resume import flatten

ARTIFACTS = ("config.yaml", "history.jsonl", "metrics.csv", "loss.png", "monitor.png", "encoder.safetensors",
             "encoder.json")
_SHOWN_FILES = 20


def data_tags(provenance: Mapping[str, Any]) -> Dict[str, str]:
    files = list(provenance.get("data_files") or [])
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    tags = {"medssl.data_fingerprint": digest, "medssl.data_files": str(len(files))}
    for i, f in enumerate(files[:_SHOWN_FILES]):
        tags[f"medssl.data_file.{i}"] = (f"{f.get('path')} size={f.get('size')} "
                                         f"sha256_head_tail={f.get('head_tail_sha256')}")
    return tags


class RunTracker:
    """The MLflow run of one pretraining run, tolerant of a tracking store that fails
    after the start (one warning, then tracking stops; metrics.jsonl has everything)."""

    def __init__(self, run: MLflowRun) -> None:
        self.run: Optional[MLflowRun] = run

    @classmethod
    def start(cls, cfg: PretrainConfig, cfg_dict: Mapping[str, Any], provenance: Mapping[str, Any],
              run_dir: Path) -> Optional["RunTracker"]:
        t = cfg.tracking
        if not t.mlflow_uri:
            return None
        run = MLflowRun.for_run_dir(run_dir, t.mlflow_uri, t.experiment, t.run_name)
        run.log_params(flatten(cfg_dict))
        run.set_tags({"mlflow.source.git.commit": provenance.get("git_commit"),
                      "medssl.git_commit": provenance.get("git_commit"),
                      "medssl.objective": cfg.objective.get("name"), "medssl.run_dir": str(Path(run_dir).resolve()),
                      **data_tags(provenance)})
        print(f"medssl: tracking in MLflow run {run.run_id} at {run.uri}", file=sys.stderr)
        return cls(run)

    def _guard(self, what: str, fn: Any, *args: Any, **kw: Any) -> None:
        if self.run is None:
            return
        try:
            fn(*args, **kw)
        except Exception as exc:  # a server gone mid-run must not end a day of training
            print(f"medssl: warning: MLflow ({self.run.uri}) failed to {what} ({' '.join(str(exc).split())[:200]}); "
                  "tracking stops here, metrics.jsonl keeps every row", file=sys.stderr)
            self.run = None

    def log(self, row: Mapping[str, Any]) -> None:
        self._guard("log metrics", lambda: self.run.log(row))  # type: ignore[union-attr]

    def finish(self, run_dir: Path, status: str) -> None:
        """Upload the run directory's artifacts (when FINISHED) and end the run."""
        files = [Path(run_dir) / n for n in ARTIFACTS]
        if status == "FINISHED":
            self._guard("upload artifacts", lambda: self.run.log_artifacts(files))  # type: ignore[union-attr]
        self._guard("end the run", lambda: self.run.close(status))  # type: ignore[union-attr]
