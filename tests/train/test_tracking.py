"""A pretraining run tracked in MLflow (a local directory store in tmp_path), read back
with MLflow's own client: params, metrics, tags, artifacts, status; a resumed run
continues the same MLflow run; a transfer report is logged to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from medssl.checkpoint_io import load_checkpoint
from medssl.train.config import load_pretrain_config
from medssl.train.loop import Pretrainer
from pretrain_helpers import tiny_cfg

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'medssl[mlflow]')")
from mlflow.tracking import MlflowClient  # noqa: E402

from medssl.tracking import LINK_NAME, log_transfer_report  # noqa: E402


def _cfg(sample_dir: Path, tmp_path: Path, **train: Any) -> Dict[str, Any]:
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", device="cpu", **{"max_steps": 3, **train})
    cfg["tracking"] = {"mlflow_uri": str(tmp_path / "mlruns"), "experiment": "cluster-tests"}
    return cfg


def test_a_tracked_run_reads_back_with_mlflows_client(sample_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(sample_dir, tmp_path)
    result = Pretrainer(load_pretrain_config(data=cfg), progress=False).fit()
    link = json.loads((tmp_path / "run" / LINK_NAME).read_text())
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    assert link["tracking_uri"] == (tmp_path / "mlruns").resolve().as_uri()
    run = client.get_run(link["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "cluster-tests"
    params = run.data.params
    assert params["optim.lr"] == "0.05" and params["objective.name"] == "simclr" and params["train.max_steps"] == "3"
    assert params["model.backbone"] == "test_resnet" and params["tracking.experiment"] == "cluster-tests"
    losses = client.get_metric_history(link["run_id"], "loss")
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted((m.step, m.value) for m in losses) == [(r["step"], pytest.approx(r["loss"])) for r in rows]
    assert {"lr", "images_per_s", "emb_std"} <= set(run.data.metrics)
    tags = run.data.tags
    assert tags["medssl.objective"] == "simclr" and len(tags["medssl.data_fingerprint"]) == 64
    assert tags["medssl.data_files"] == "1" and "ihcstain.npz" in tags["medssl.data_file.0"]
    commit = load_checkpoint(result.checkpoint)["provenance"]["git_commit"]  # None outside a git checkout
    assert tags.get("medssl.git_commit") == commit and tags.get("mlflow.source.git.commit") == commit
    names = {a.path for a in client.list_artifacts(link["run_id"])}
    assert {"encoder.safetensors", "encoder.json", "config.yaml", "metrics.csv", "loss.png"} <= names
    local = client.download_artifacts(link["run_id"], "encoder.safetensors", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == Path(result.encoder).read_bytes()


def test_a_resumed_run_continues_the_same_mlflow_run_and_transfer_logs_there(
        sample_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(sample_dir, tmp_path, max_steps=2)
    Pretrainer(load_pretrain_config(data=cfg), progress=False).fit()
    first = json.loads((tmp_path / "run" / LINK_NAME).read_text())["run_id"]
    resumed = load_pretrain_config(data=cfg, overrides=["train.max_steps=4", "train.resume=auto"])
    Pretrainer(resumed, progress=False).fit()
    link = json.loads((tmp_path / "run" / LINK_NAME).read_text())
    assert link["run_id"] == first
    client = MlflowClient(tracking_uri=link["tracking_uri"])
    assert len(client.search_runs([link["experiment_id"]])) == 1
    steps = sorted(m.step for m in client.get_metric_history(first, "loss"))
    assert steps == [1, 2, 3, 4]
    assert client.get_run(first).data.params["train.max_steps"] == "2"  # params keep their first value

    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.json").write_text("{}")
    (out / "report.md").write_text("# report\n")
    report = {"aggregate": {"linear": {"auc": {"mean": 0.75, "std": 0.01}, "n": 3}, "note": "text"}}
    assert log_transfer_report(str(tmp_path / "run" / "encoder.safetensors"), out, report) == first
    metrics = client.get_run(first).data.metrics
    assert metrics["transfer.eval.linear.auc.mean"] == 0.75 and metrics["transfer.eval.linear.n"] == 3
    assert {a.path for a in client.list_artifacts(first, "transfer/eval")} == {"transfer/eval/report.json",
                                                                              "transfer/eval/report.md"}


def test_untracked_runs_write_no_link_and_transfer_logs_nothing(sample_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", device="cpu", max_steps=1)
    Pretrainer(load_pretrain_config(data=cfg), progress=False).fit()
    assert not (tmp_path / "run" / LINK_NAME).exists()
    assert log_transfer_report(str(tmp_path / "run"), tmp_path, {"aggregate": {"a": 1.0}}) is None


def test_an_unreachable_tracking_uri_stops_before_training_with_one_line(sample_dir: Path, tmp_path: Path) -> None:
    from medssl.tracking import TrackingError

    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", device="cpu", max_steps=1)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg["tracking"] = {"mlflow_uri": str(blocker / "mlruns")}  # under a file: cannot be created
    with pytest.raises(TrackingError, match=r"cannot open an MLflow run at tracking\.mlflow_uri=file://.*afile/mlruns"):
        Pretrainer(load_pretrain_config(data=cfg), progress=False).fit()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_run_stopped_by_a_signal_is_killed_then_finished_by_its_resume(sample_dir: Path, tmp_path: Path) -> None:
    import signal

    cfg = _cfg(sample_dir, tmp_path, max_steps=4, ckpt_every=100)
    trainer = Pretrainer(load_pretrain_config(data=cfg), progress=False)
    step = trainer.train_step

    def signalled_after_step_2(batch: Any) -> Any:
        out = step(batch)
        if trainer.step == 2:
            trainer._on_signal(signal.SIGUSR1, None)
        return out

    trainer.train_step = signalled_after_step_2  # type: ignore[method-assign]
    assert trainer.fit().stop_signal == signal.SIGUSR1
    link = json.loads((tmp_path / "run" / LINK_NAME).read_text())
    client = MlflowClient(tracking_uri=link["tracking_uri"])
    assert client.get_run(link["run_id"]).info.status == "KILLED"
    Pretrainer(load_pretrain_config(data=cfg, overrides=["train.resume=auto"]), progress=False).fit()
    run = client.get_run(link["run_id"])
    assert run.info.status == "FINISHED"
    assert "encoder.safetensors" in {a.path for a in client.list_artifacts(run.info.run_id)}
