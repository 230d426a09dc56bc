"""Optional MLflow tracking: a pretraining run's params, metrics, tags and artifacts in an
MLflow run, and later transfer reports in the same run.

Off unless ``tracking.mlflow_uri`` is set (docs/configuration.md); needs the ``mlflow``
extra (``pip install "medssl[mlflow]"``, the client only). The URI is any MLflow
tracking URI: a lab server (``http://mlflow.lab:5000``), a database
(``sqlite:///mlflow.db``, with the full ``mlflow`` package) or a local directory
(``file:///data/mlruns`` or a plain path), which needs no server. MLflow 3 keeps the
directory store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is
true; a local directory named here is an explicit choice, so medssl sets that variable
(unless it is already set).

The run directory keeps ``mlflow.json`` (URI, experiment and run id): a resumed or
requeued run continues the same MLflow run, and ``medssl transfer`` on the run's encoder
logs its report there. Used by training and evaluation, so it imports neither.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

from medssl.errors import ConfigError, MedSSLError
from medssl.fileio import atomic_write

LINK_NAME = "mlflow.json"
_BATCH = 100  # MLflow's limit of params (and tags) per log_batch call
_PARAM_CHARS = 6000  # and of one param value


class TrackingError(MedSSLError):
    """The tracking server or store could not be reached or written."""


def _import_mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError("tracking.mlflow_uri is set but MLflow is not installed: pip install 'medssl[mlflow]' "
                          "(or unset tracking.mlflow_uri)") from exc
    return MlflowClient


def normalise_uri(uri: str) -> str:
    """A plain path becomes an absolute ``file://`` URI (MLflow resolves relative ones
    against the working directory of each later reader); a local directory store is
    allowed in this process (``MLFLOW_ALLOW_FILE_STORE``)."""
    if "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).expanduser().resolve().as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def _finite_numbers(row: Mapping[str, Any]) -> Dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


class MLflowRun:
    """One MLflow run, written through ``MlflowClient`` (no process-global active run)."""

    def __init__(self, client: Any, run_id: str, uri: str) -> None:
        self.client, self.run_id, self.uri = client, run_id, uri

    @classmethod
    def for_run_dir(cls, run_dir: Path, uri: str, experiment: str, run_name: Optional[str]) -> "MLflowRun":
        """The MLflow run of ``run_dir``: the one its ``mlflow.json`` names (a resumed run,
        set back to RUNNING), else a new run in ``experiment``, recorded there."""
        MlflowClient = _import_mlflow()
        uri = normalise_uri(uri)
        link = Path(run_dir) / LINK_NAME
        try:
            client = MlflowClient(tracking_uri=uri)
            known = json.loads(link.read_text()) if link.is_file() else None
            if known and known.get("tracking_uri") == uri:
                client.update_run(known["run_id"], status="RUNNING")
                return cls(client, known["run_id"], uri)
            found = client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found is not None else client.create_experiment(experiment)
            run = client.create_run(exp_id, run_name=run_name or Path(run_dir).name)
        except Exception as exc:  # MLflow raises MlflowException, requests' and OS errors alike
            raise TrackingError(f"cannot open an MLflow run at tracking.mlflow_uri={uri} (experiment "
                                f"{experiment!r}): {' '.join(str(exc).split())[:300]}") from exc
        atomic_write(link, lambda tmp: tmp.write_text(json.dumps(
            {"tracking_uri": uri, "experiment_id": exp_id, "run_id": run.info.run_id}, indent=2)))
        return cls(client, run.info.run_id, uri)

    @classmethod
    def linked(cls, run_dir: Path) -> Optional["MLflowRun"]:
        """The run ``run_dir/mlflow.json`` names, or None (not tracked / MLflow absent)."""
        link = Path(run_dir) / LINK_NAME
        if not link.is_file():
            return None
        try:
            MlflowClient = _import_mlflow()
        except ConfigError:
            return None
        known = json.loads(link.read_text())
        uri = normalise_uri(known["tracking_uri"])
        return cls(MlflowClient(tracking_uri=uri), known["run_id"], uri)

    # ------------------------------------------------------------------ writing
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params not logged yet (MLflow params cannot change: on resume the run keeps the
        values it started with; history.jsonl records what changed)."""
        from mlflow.entities import Param

        have = set(self.client.get_run(self.run_id).data.params)
        todo = [Param(k, str(v)[:_PARAM_CHARS]) for k, v in params.items() if k not in have]
        for i in range(0, len(todo), _BATCH):
            self.client.log_batch(self.run_id, params=todo[i:i + _BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:_PARAM_CHARS]) for k, v in tags.items() if v is not None]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[i:i + _BATCH])

    def log(self, row: Mapping[str, Any]) -> None:
        """One metrics row (``step`` plus scalars); non-finite and non-numeric values are
        left out (they stay in metrics.jsonl)."""
        from mlflow.entities import Metric

        step = int(row.get("step", 0))
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _finite_numbers(row).items() if k not in ("step", "epoch")]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifacts(self, paths: Iterable[Path], artifact_path: Optional[str] = None) -> List[str]:
        """Upload the files that exist; their names."""
        done = []
        for p in paths:
            if Path(p).is_file():
                self.client.log_artifact(self.run_id, str(p), artifact_path=artifact_path)
                done.append(Path(p).name)
        return done

    def close(self, status: str = "FINISHED") -> None:
        """End the run (``FINISHED``, ``KILLED`` for a stopped run that will be resumed, ``FAILED``)."""
        self.client.set_terminated(self.run_id, status=status)


def log_transfer_report(encoder: str, out_dir: Path, report: Mapping[str, Any]) -> Optional[str]:
    """Log a transfer report to the MLflow run of the pretraining run that exported
    ``encoder`` (a run directory or a file in one), if that run was tracked: the report's
    files as artifacts under ``transfer/OUT``, its aggregate numbers as metrics
    ``transfer.OUT.<path>``. The run id, or None when there is nothing to log to."""
    enc = Path(encoder)
    run = MLflowRun.linked(enc if enc.is_dir() else enc.parent)
    if run is None:
        return None
    name = Path(out_dir).name
    flat: Dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            flat[prefix] = float(value)

    walk(f"transfer.{name}", report.get("aggregate", {}))
    try:
        run.log(flat)
        run.log_artifacts(sorted(p for p in Path(out_dir).iterdir() if p.is_file()), artifact_path=f"transfer/{name}")
    except Exception as exc:
        raise TrackingError(f"cannot log the transfer report to MLflow run {run.run_id} at {run.uri}: "
                            f"{' '.join(str(exc).split())[:300]}") from exc
    return run.run_id
