"""The tiny pretraining config the training, signal, distributed and reliability tests share.

Importable as ``pretrain_helpers`` from any test (``tests/`` is on ``sys.path`` because
``tests/conftest.py`` sits there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

# timm's tiny test ResNet with small heads: a step takes well under a second on a CPU
TINY_MODEL = {"backbone": "test_resnet", "proj_hidden": 32, "proj_dim": 16, "pred_hidden": 32}


def tiny_cfg(sample_dir: Path, out: Path, objective: Union[str, Mapping[str, Any]] = "pnnclr",
             model: Optional[Mapping[str, Any]] = None, **train: Any) -> Dict[str, Any]:
    """A pretraining config mapping on the embedded sample's 28 px MedMNIST-format file.

    ``objective`` is a name or a full objective mapping; ``model`` entries extend
    :data:`TINY_MODEL`; keyword arguments override the ``train`` section.
    """
    t: Dict[str, Any] = {"max_steps": 4, "batch_size": 8, "num_workers": 0, "log_every": 1, "ckpt_every": 2,
                         "keep_last": 5}
    t.update(train)
    return {
        "data": {"name": "medmnist", "path": str(sample_dir / "medmnist" / "ihcstain.npz"), "split": "train"},
        "objective": {"name": objective} if isinstance(objective, str) else dict(objective),
        "augment": {"preset": "histo", "image_size": 28},
        "model": {**TINY_MODEL, **(model or {})},
        "support_set": {"size": 64},
        "optim": {"name": "sgd", "lr": 0.05},
        "train": t,
        "out_dir": str(out),
        "seed": 3,
    }


def trained_state(checkpoint: Path) -> Dict[str, Any]:
    """The tensors a run trains, from a checkpoint: ``model.*``, ``objective.*`` and
    ``support.*`` (what "resume is exact" compares)."""
    import torch

    from medssl.checkpoint_io import load_checkpoint

    state = load_checkpoint(checkpoint)
    out = {f"model.{k}": v for k, v in state["model"].items()}
    out.update({f"objective.{k}": v for k, v in state["objective"].items()})
    out.update({f"support.{k}": v for k, v in state["support_set"].items() if torch.is_tensor(v)})
    return out


def wait_for_rows(proc: Any, metrics: Path, n: int, timeout_s: float = 120.0) -> None:
    """Wait until the child ``proc`` has logged ``n`` loss rows to ``metrics`` (it must not
    exit first)."""
    import json
    import time

    deadline = time.time() + timeout_s
    while True:
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        if sum(1 for ln in lines if ln.strip() and "loss" in json.loads(ln)) >= n:
            return
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "training did not start in time"
        time.sleep(0.05)
