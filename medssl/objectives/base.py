"""What every objective receives and returns.

The training loop is objective-agnostic: it runs the model on the views of a batch,
packs the results into :class:`ViewOutputs` and calls
``objective(outputs, support_set) -> (loss, diagnostics)``. An objective that uses the
support set performs its neighbour look-ups first and enqueues this step's embeddings
last (so a step never finds its own rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from medssl.objectives.support_set import SupportSet

Diagnostics = Dict[str, float]


@dataclass
class ViewOutputs:
    """Per-view outputs of an SSL model for one batch of ``B`` images (lists indexed by view).

    All embeddings are L2-normalised rows of width ``D``.

    Attributes:
        z: online projections ``n(g(f(x)))``, each ``[B, D]``, carrying gradient.
        p: online predictions ``n(q(g(f(x))))``, each ``[B, D]``; ``None`` without a predictor.
        t: target-network projections ``n(g'(f'(x)))``, each ``[B, D]``, no gradient;
            ``None`` without a target network.
        indices: ``[B]`` int64 dataset indices of the images (for same-image diagnostics
            and the support set's bookkeeping), or ``None``.
        labels: ``[B]`` int64 labels, ``-1`` when unknown; used only for diagnostics
            (neighbour purity), never by a loss.
    """

    z: Sequence[Tensor]
    p: Optional[Sequence[Tensor]] = None
    t: Optional[Sequence[Tensor]] = None
    indices: Optional[Tensor] = None
    labels: Optional[Tensor] = None

    @property
    def batch_size(self) -> int:
        return int(self.z[0].shape[0])


class Objective(nn.Module):
    """Base of the objective modules: a thin wrapper holding the parameters of one pure
    loss function. Class attributes tell the model builder what the objective needs."""

    uses_predictor: ClassVar[bool] = False
    uses_target: ClassVar[bool] = False
    uses_support_set: ClassVar[bool] = False

    def forward(
        self, outputs: ViewOutputs, support: Optional["SupportSet"] = None
    ) -> Tuple[Tensor, Diagnostics]:  # pragma: no cover - abstract
        raise NotImplementedError


def embedding_std(x: Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised rows ``[B, D]``.

    About ``1/sqrt(D)`` for well-spread embeddings and ``0`` for a collapsed one.
    """
    x = torch.nn.functional.normalize(x.detach().float(), dim=1)
    return float(x.std(dim=0).mean()) if x.shape[0] > 1 else 0.0
