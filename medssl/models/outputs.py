"""What an SSL model returns for one batch: the type objectives consume.

It lives with the model (its producer); objectives and the training loop import it
from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from torch import Tensor


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
