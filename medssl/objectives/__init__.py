"""Self-supervised objectives and their shared pieces (support set, neighbour selection).

Importing this package registers every objective in :data:`medssl.registry.OBJECTIVES`
(``simclr``, ``nnclr``, ``pnnclr``, ``snclr``, ``psm``) and every neighbour selector in
:data:`medssl.registry.NEIGHBOURS` (``nn``, ``topk``, ``pnn``).
"""

from __future__ import annotations

from medssl.objectives.base import Objective, Requirements, embedding_std
from medssl.objectives.support_set import SupportSet
from medssl.objectives.neighbours import Neighbours, build_selector, pseudo_neighbour
from medssl.objectives.support_objective import SupportSetObjective, Terms
from medssl.objectives.functional import ce_rows, nt_xent
from medssl.objectives.simclr import SimCLR, simclr_loss
from medssl.objectives.nnclr import NNCLR, nnclr_loss
from medssl.objectives.pnnclr import PNNCLR, pnnclr_loss
from medssl.objectives.snclr import SNCLR, snclr_view_loss
from medssl.objectives.psm import PSM, psm_view_loss

__all__ = [
    "Objective", "Requirements", "SupportSetObjective", "Terms", "embedding_std", "SupportSet",
    "Neighbours", "build_selector", "pseudo_neighbour", "ce_rows", "nt_xent", "SimCLR", "simclr_loss", "NNCLR", "nnclr_loss",
    "PNNCLR", "pnnclr_loss", "SNCLR", "snclr_view_loss", "PSM", "psm_view_loss",
]
