"""Training metrics: the JSON lines, the monitor figure a user reads, TensorBoard's copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import matplotlib.figure
import pytest

from medssl.train.metrics_log import CAPTIONS, MetricsLogger, plot_metrics, read_jsonl


def _rows(n: int = 12) -> List[dict]:
    return [{"step": i, "loss": 5.0 / i, "emb_std": 0.05, "nn_purity": 0.4 + i / 100, "nn_same_image": 0.1}
            for i in range(1, n + 1)]


def test_monitor_figure_is_titled_labelled_and_captioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: List[Any] = []
    real = matplotlib.figure.Figure.savefig

    def keep(fig: Any, *a: Any, **kw: Any) -> None:
        saved.append(fig)
        real(fig, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    path = plot_metrics(_rows(), tmp_path / "monitor.png", ["emb_std", "nn_purity", "nn_same_image", "knn_top1"],
                        title="pnnclr: representation health during pretraining")
    assert path is not None and path.stat().st_size > 5000
    fig = saved[0]
    assert fig._suptitle.get_text() == "pnnclr: representation health during pretraining"
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == ["emb_std", "nn_purity", "nn_same_image"]  # knn absent
    assert all(ax.get_xlabel() == "step" and ax.get_ylabel() for ax in axes)
    for ax, key in zip(axes, ("emb_std", "nn_purity", "nn_same_image")):
        texts = [t.get_text() for t in ax.texts]
        assert texts == [CAPTIONS[key]] and "\n" not in texts[0]
    assert "collapsed" in CAPTIONS["emb_std"] and "label" in CAPTIONS["nn_purity"]
    assert "same image" in CAPTIONS["nn_same_image"]


def test_jsonl_keeps_rows_and_nonfinite_becomes_null(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log({"step": 1, "loss": float("nan")})
    log.log({"step": 2, "loss": 1.5})
    log.close()
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": None}, {"step": 2, "loss": 1.5}]
    assert not (tmp_path / "tensorboard").exists()


def test_tensorboard_event_file_is_readable_by_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path)
    for row in _rows(5):
        log.log(row)
    log.close()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"loss", "emb_std", "nn_purity"} <= set(acc.Tags()["scalars"])
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5]
    assert [e.value for e in loss] == pytest.approx([5.0 / i for i in range(1, 6)])
