"""Fine-tuning: an encoder plus a linear head trained end to end on a (small) label subset.

Protocol (docs/transfer.md): the training images go through a light random
augmentation (a ``medssl.augment`` preset at the encoder's input size and normalisation)
and the test images through the encoder's deterministic ``eval`` preprocessing. The
encoder (learning rate ``lr``) and a new linear head (``head_lr``, zero-initialised)
are trained with AdamW for ``epochs`` passes over the subset, cross-entropy (BCE for
multilabel). With ``head_init="probe"`` (the default; LP-FT, Kumar et al. 2022) the head
starts as the L-BFGS linear probe fit on the subset's frozen features (weight decay
``probe_weight_decay``), so fine-tuning starts from the linear-probe solution instead of
distorting the features to fit a random head; ``"zero"`` starts from zeros. Normalisation layers keep their pretrained running statistics (they stay
in eval mode): with a few dozen labelled images, batch statistics would be noise.
Everything random (shuffling, augmentation) is drawn from ``seed``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError, EvaluationError
from medssl.progress import Progress

Preprocess = Callable[[Any], torch.Tensor]
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
HISTO_FLAGS = ("pathmnist", "ihcstain")  # MedMNIST-layout flags holding stained tissue


@dataclass
class FinetuneResult:
    """Test probabilities ``(M, C)``, test embeddings ``(M, F)`` and the loss per epoch."""

    scores: np.ndarray
    embeddings: np.ndarray
    losses: List[float] = field(default_factory=list)
    protocol: Dict[str, Any] = field(default_factory=dict)


def pick_preset(describe: Dict[str, Any], in_channels: int) -> str:
    """``histo`` for H&E / IHC-like data (PCAM, PathMNIST, the sample's ihcstain), ``gray``
    for 1-channel data, else ``natural``. ``describe`` is the dataset's ``describe()``."""
    if in_channels == 1:
        return "gray"
    name = str(describe.get("dataset", "")).lower()
    flag = str(describe.get("flag", "")).lower()
    if name == "pcam" or flag in HISTO_FLAGS:
        return "histo"
    return "natural"


class _Head(nn.Module):
    def __init__(self, encoder: nn.Module, num_features: int, num_outputs: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(num_features, num_outputs)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _freeze_norm_stats(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, _NORM_TYPES):
            m.eval()


def _loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y.float())
    return F.cross_entropy(logits, y.long().reshape(-1))


def _probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


def finetune(
    encoder: nn.Module,
    train_data: Any,
    train_indices: Sequence[int],
    test_data: Any,
    preprocess: Preprocess,
    *,
    task: str,
    num_classes: int,
    augment: Callable[[np.ndarray, Any], torch.Tensor],
    epochs: int = 5,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
    device: Optional[torch.device] = None,
    eval_batch_size: int = 256,
    head_init: str = "probe",
    probe_weight_decay: float = 1e-3,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune a *copy* of ``encoder`` (``[B, C, S, S] -> [B, F]``) on
    ``train_data[train_indices]`` and score every item of ``test_data``.

    ``augment(image HWC uint8, numpy Generator) -> tensor [C, S, S]`` makes training inputs;
    ``preprocess(image) -> tensor [C, S, S]`` makes test inputs. ``num_classes`` is the
    number of outputs (2 for binary). The given encoder is left untouched. ``progress``
    shows the batches of each epoch as the stage ``fine-tune seed S`` (:mod:`medssl.progress`).
    """
    if head_init not in ("probe", "zero"):
        raise ConfigError(f"finetune head_init must be 'probe' or 'zero', got {head_init!r}")
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"finetune needs epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
    idx = np.asarray(train_indices, dtype=np.int64)
    if idx.size == 0:
        raise EvaluationError("finetune: the label subset is empty")
    device = device or next(encoder.parameters()).device
    num_features = int(getattr(encoder, "num_features", 0)) or _probe_width(encoder, preprocess, train_data, idx[0], device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _Head(copy.deepcopy(encoder), num_features, num_classes).to(device)
    if head_init == "probe":
        _probe_init(model, train_data, idx, preprocess, task, num_classes, probe_weight_decay, eval_batch_size, device)
    opt = torch.optim.AdamW(
        [{"params": model.encoder.parameters(), "lr": lr}, {"params": model.head.parameters(), "lr": head_lr}],
        weight_decay=weight_decay,
    )
    rng = np.random.default_rng(seed)
    losses: List[float] = []
    model.train()
    _freeze_norm_stats(model)
    n_batches = -(-idx.size // batch_size)
    bar = Progress(epochs * n_batches, f"fine-tune seed {seed}", enabled=progress, unit="batch")
    for epoch in range(epochs):
        order = idx[rng.permutation(idx.size)]
        total, seen = 0.0, 0
        for start in range(0, order.size, batch_size):
            items = [train_data[int(i)] for i in order[start:start + batch_size]]
            x = torch.stack([augment(im, rng) for im, _ in items]).to(device)
            y = torch.as_tensor(np.stack([np.asarray(lab) for _, lab in items])).to(device)
            loss = _loss(model(x), y, task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(items)
            seen += len(items)
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{total / seen:.4f}")
            bar.update(1)
        losses.append(total / seen)
    bar.close()
    scores, emb = _predict(model, test_data, preprocess, task, eval_batch_size, device)
    protocol = {
        "method": "fine-tune (encoder + linear head, end to end)",
        "optimizer": "AdamW", "epochs": epochs, "lr_encoder": lr, "lr_head": head_lr,
        "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed,
        "norm_layers": "running statistics frozen", "n_train": int(idx.size), "head_init": head_init,
        "probe_weight_decay": probe_weight_decay if head_init == "probe" else None,
        "final_train_loss": losses[-1],
    }  # fmt: skip
    return FinetuneResult(scores, emb, losses, protocol)


def _probe_init(model: _Head, data: Any, idx: np.ndarray, preprocess: Preprocess, task: str, num_classes: int,
                weight_decay: float, batch_size: int, device: torch.device) -> None:
    """Set the head to the linear probe of the frozen features, with the probe's
    standardisation folded in: ``W' = W / std``, ``b' = b - (mean / std) W``."""
    from medssl.eval.features import embed
    from medssl.eval.linear import fit_linear
    from medssl.eval.validate import multilabel_targets, single_labels

    feats, labels = embed(model.encoder, data, preprocess, batch_size=batch_size, device=device, indices=idx)
    y = multilabel_targets(labels) if task == "multilabel" else single_labels(labels)
    probe = fit_linear(feats, y, task, num_classes, weight_decay)
    w = probe.weight / probe.std[:, None]
    b = probe.bias - (probe.mean / probe.std) @ probe.weight
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
        model.head.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)))


def _probe_width(encoder: nn.Module, preprocess: Preprocess, data: Any, i: int, device: torch.device) -> int:
    was = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = encoder(preprocess(data[int(i)][0])[None].to(device))
    encoder.train(was)
    return int(out.shape[1])


@torch.no_grad()
def _predict(model: _Head, data: Any, preprocess: Preprocess, task: str, batch_size: int,
             device: torch.device) -> tuple:
    model.eval()
    scores, embs = [], []
    for start in range(0, len(data), batch_size):
        x = torch.stack([preprocess(data[i][0]) for i in range(start, min(start + batch_size, len(data)))])
        e = model.encoder(x.to(device))
        scores.append(_probabilities(model.head(e), task).double().cpu())
        embs.append(e.float().cpu())
    return torch.cat(scores).numpy(), torch.cat(embs).numpy()
