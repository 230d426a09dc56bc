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
