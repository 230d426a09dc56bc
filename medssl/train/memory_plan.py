"""Lower bounds on the memory a pretraining config needs, checked before anything is built.

Each estimate counts only what the setting itself must hold (float32), so it never refuses
a run that fits; it exists to turn an order-of-magnitude typo into one line naming the key
instead of an allocator traceback (:mod:`medssl.memory`).
"""

from __future__ import annotations

from typing import List, Tuple

from medssl.memory import check_allocation
from medssl.registry import OBJECTIVES
from medssl.train.config import PretrainConfig

FLOAT32 = 4


def training_memory(cfg: PretrainConfig, in_chans: int = 1) -> List[Tuple[float, str, str]]:
    """``(bytes, what, key)`` lower bounds: one batch of views, the projection head's
    weights, the support set (``in_chans`` 1 is the least any dataset has)."""
    a, m, t = cfg.augment, cfg.model, cfg.train
    views = float(t.batch_size) * a.num_views * in_chans * a.image_size ** 2 * FLOAT32
    hidden_layers = max(m.proj_layers - 2, 0)
    head = (float(m.proj_hidden) ** 2 * hidden_layers + float(m.proj_hidden) * m.proj_dim
            if m.proj_layers >= 2 else float(m.proj_dim))
    wants = getattr(getattr(OBJECTIVES.get(cfg.objective["name"]), "requirements", None), "predictor", False)
    if m.predictor is True or (m.predictor == "auto" and wants):
        head += 2.0 * m.pred_hidden * m.proj_dim
    support = float(cfg.support_set.size) * m.proj_dim * FLOAT32
    return [
        (views, f"one batch of views (augment.image_size={a.image_size}, train.batch_size={t.batch_size}, "
                f"augment.num_views={a.num_views})", "augment.image_size or train.batch_size"),
        (head * FLOAT32, f"the projection head's weights (model.proj_hidden={m.proj_hidden}, "
                         f"model.proj_layers={m.proj_layers}, model.pred_hidden={m.pred_hidden})",
         "model.proj_hidden / model.pred_hidden"),
        (support, f"the support set (support_set.size={cfg.support_set.size} x model.proj_dim={m.proj_dim})",
         "support_set.size"),
    ]


def check_training_memory(cfg: PretrainConfig, in_chans: int = 1) -> None:
    """ConfigError ``cannot allocate N GB for X`` for the first estimate above the memory
    this process may use; nothing is allocated on the way."""
    for nbytes, what, key in training_memory(cfg, in_chans):
        check_allocation(nbytes, what, f"lower {key}")
