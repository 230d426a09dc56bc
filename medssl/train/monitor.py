"""Training health checks: non-finite loss and collapsed embeddings stop a run with a
message that says what happened, when, and where the last good checkpoint is."""

from __future__ import annotations

import math
from typing import Any, Optional

from medssl.errors import MedSSLError


class TrainingStopped(MedSSLError):
    """The run was stopped on purpose because training went wrong (NaN, collapse)."""


class HealthMonitor:
    """Checks each step's loss and embedding spread.

    Args:
        collapse_std: an ``emb_std`` (mean per-dimension std of normalised embeddings;
            ``1/sqrt(D)`` when well spread) below this counts as collapsed.
        patience: consecutive collapsed steps that stop the run.
    """

    def __init__(self, collapse_std: float = 1e-3, patience: int = 50) -> None:
        self.collapse_std = collapse_std
        self.patience = patience
        self.collapsed_steps = 0

    def check(self, step: int, loss: float, emb_std: Optional[float], last_checkpoint: Optional[str]) -> None:
        keep = (
            f"The last good checkpoint is {last_checkpoint}." if last_checkpoint
            else "No checkpoint was written before this step."
        )
        if not math.isfinite(loss):
            raise TrainingStopped(
                f"the loss became {loss} at step {step}. {keep} Lower optim.lr, set optim.grad_clip "
                "(e.g. 1.0), or use train.amp=bf16/off if this happened under fp16."
            )
        if emb_std is None:
            return
        if emb_std < self.collapse_std:
            self.collapsed_steps += 1
        else:
            self.collapsed_steps = 0
        if self.collapsed_steps >= self.patience:
            raise TrainingStopped(
                f"the embeddings collapsed: emb_std stayed below {self.collapse_std} for "
                f"{self.patience} steps (now {emb_std:.2e} at step {step}). {keep} Lower optim.lr, "
                "check the augmentation is not too weak, or raise the temperature."
            )

    def state_dict(self) -> dict:
        return {"collapsed_steps": self.collapsed_steps}

    def load_state_dict(self, state: dict) -> None:
        self.collapsed_steps = int(state.get("collapsed_steps", 0))


class KNNMonitor:
    """kNN top-1 / AUC of the current encoder on a labelled validation split.

    The memory bank is the training set when it is labelled (at most ``max_bank`` evenly
    spaced labelled items); otherwise the validation set is scored leave-one-out against
    itself. Images go through the deterministic ``eval`` preprocessing with the training
    normalisation. The DataLoaders use their own generator, so monitoring never moves the
    global RNG (exact resume does not depend on when it ran).
    """

    def __init__(self, train_dataset: Any, val_dataset: Any, preprocess: Any, k: int = 20,
                 max_bank: int = 5000, max_query: int = 2000, batch_size: int = 256) -> None:
        import numpy as np

        from medssl.errors import ConfigError

        if getattr(val_dataset, "task", None) is None:
            raise ConfigError("val_data must be a labelled dataset for the kNN monitor (its task is None)")
        self.val = val_dataset
        self.task = val_dataset.task
        self.preprocess = preprocess
        self.k = k
        self.batch_size = batch_size
        self.query_idx = self._spaced(np.arange(len(val_dataset)), max_query)
        self.train = None
        self.bank_idx = None
        if getattr(train_dataset, "task", None) is not None and train_dataset.task == self.task:
            labels = np.asarray(train_dataset.labels())
            labelled = np.arange(len(train_dataset)) if labels.ndim > 1 else np.flatnonzero(labels >= 0)
            if len(labelled) > 0:
                self.train = train_dataset
                self.bank_idx = self._spaced(labelled, max_bank)

    @staticmethod
    def _spaced(idx: Any, limit: int) -> Any:
        import numpy as np

        if len(idx) <= limit:
            return idx
        return idx[np.linspace(0, len(idx) - 1, limit).round().astype(int)]

    def __call__(self, encoder: Any) -> dict:
        from medssl.eval.features import embed
        from medssl.eval.knn import knn_evaluate

        q_emb, q_lab = embed(encoder, self.val, self.preprocess, batch_size=self.batch_size, indices=self.query_idx)
        if self.train is not None:
            b_emb, b_lab = embed(encoder, self.train, self.preprocess, batch_size=self.batch_size,
                                 indices=self.bank_idx)
            res = knn_evaluate(b_emb, b_lab, q_emb, q_lab, task=self.task, k=self.k,
                               num_classes=self.val.num_classes)
        else:
            from medssl.eval.knn import knn_predict
            from medssl.eval.metrics import accuracy, auc

            scores = knn_predict(q_emb, q_lab, q_emb, k=self.k, num_classes=self.val.num_classes,
                                 exclude_self=True).numpy()
            res = {"top1": accuracy(q_lab, scores, self.task), "auc": auc(q_lab, scores, self.task)}
        out = {"knn_top1": res["top1"]}
        if res.get("auc") is not None:
            out["knn_auc"] = res["auc"]
        return out
