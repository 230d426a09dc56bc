"""SimCLR (baseline): NT-Xent over the ``2B`` online projections of a batch."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Tuple

import torch
from torch import Tensor

from medssl.models.outputs import ViewOutputs
from medssl.objectives.base import Diagnostics, Objective, embedding_std
from medssl.objectives.common import check_positive, require_views
from medssl.objectives.functional import nt_xent
from medssl.registry import OBJECTIVES


def simclr_loss(z1: Tensor, z2: Tensor, tau: float = 0.1) -> Tensor:
    """NT-Xent of two views' unit projections ``z1, z2`` (``[B, D]``) at temperature ``tau``."""
    return nt_xent(z1, z2, tau)


class SimCLR(Objective):
    """SimCLR: no predictor, no target network, no support set.

    Args:
        tau: softmax temperature (> 0), default 0.1.
    """

    name: ClassVar[str] = "simclr"

    def __init__(self, tau: float = 0.1) -> None:
        super().__init__()
        self.tau = check_positive(self.name, "tau", tau)

    def forward(
        self, outputs: ViewOutputs, support: Optional[Any] = None, *, generator: Optional[torch.Generator] = None
    ) -> Tuple[Tensor, Diagnostics]:
        z1, z2 = require_views(self.name, "z", outputs.z)[:2]
        loss = simclr_loss(z1, z2, self.tau)
        return loss, {"loss": float(loss.detach()), "emb_std": embedding_std(z1)}


OBJECTIVES.register("simclr")(SimCLR)
