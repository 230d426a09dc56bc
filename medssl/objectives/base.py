"""What every objective receives, returns and declares.

The training loop is objective-agnostic: it runs the model on the views of a batch,
packs the results into :class:`~medssl.models.outputs.ViewOutputs` and calls
``objective(outputs, support_set) -> (loss, diagnostics)``. What the objective needs
around it (a predictor, an EMA target, a support set, ...) it declares in one
:class:`Requirements` value, the only thing the model builder and the loop read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from medssl.models.outputs import ViewOutputs

if TYPE_CHECKING:  # pragma: no cover
    from medssl.objectives.support_set import SupportSet

Diagnostics = Dict[str, float]


@dataclass(frozen=True)
class Requirements:
    """What an objective needs from the model and the training loop.

    Attributes:
        predictor: the model must produce predictions ``p`` (a predictor head).
        target: the model must produce EMA-target projections ``t``.
        support_set: the objective reads and fills a :class:`SupportSet` (second argument).
        embedding_width_option: the constructor option that sizes the objective's own
            parameters by the embedding width ``D`` (SNCLR's ``dim``); the training loop sets
            it to ``model.proj_dim`` unless the config does. ``None``: any width works.
        neighbours_per_query: support-set rows one look-up needs (the selector's ``k``); a
            support set that can never hold that many would stay in cold start for ever.
    """

    predictor: bool = False
    target: bool = False
    support_set: bool = False
    embedding_width_option: Optional[str] = None
    neighbours_per_query: int = 0


class Objective(nn.Module):
    """Base of the objective modules: a thin wrapper holding the parameters of one pure
    loss function. ``requirements`` (class-level, refined per instance where a config
    option changes it) tells the model builder and the loop what the objective needs."""

    name: ClassVar[str] = "objective"
    requirements: Requirements = Requirements()

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
