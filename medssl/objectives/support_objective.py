"""The shared step of the support-set objectives (NNCLR, pNNCLR, SNCLR, PSM).

Every one of them does the same five things per step, in this order:

1. take (and check) the views it needs from the model's outputs;
2. look up neighbours of its queries in the support set, *before* this step's rows
   are enqueued (so a step never finds its own rows); ``None`` at cold start;
3. compute its loss terms (its own maths: :meth:`SupportSetObjective.terms`);
4. report diagnostics (its terms, cold start, neighbour purity / same-image rates);
5. enqueue this step's rows.

:class:`SupportSetObjective` holds that skeleton; a subclass only says which views it
uses, what it queries, what it computes and what it stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from medssl.models.outputs import ViewOutputs
from medssl.errors import ConfigError
from medssl.objectives.base import Diagnostics, Objective, embedding_std
from medssl.objectives.common import (
    SelectorSpec,
    SeededGenerators,
    check_between,
    check_choice,
    check_int,
    check_positive,
    look_up,
    neighbour_stats,
    require_support,
    require_views,
    resolve_selector,
    selector_k,
    tile,
)
from medssl.objectives.functional import nt_xent
from medssl.objectives.instance_schedule import SCHEDULES, InstanceSchedule, view_agreement
from medssl.objectives.neighbours import Neighbours
from medssl.objectives.support_set import SupportSet

Views = Dict[str, Tensor]


@dataclass
class Terms:
    """What one objective's maths produced for a step.

    Attributes:
        loss: the scalar to minimise.
        diagnostics: its own floats (loss terms, ``emb_std``, ...), reported after ``loss``.
        weights: per-neighbour weights ``[Q, K]`` for the weighted purity diagnostic, or None.
    """

    loss: Tensor
    diagnostics: Diagnostics = field(default_factory=dict)
    weights: Optional[Tensor] = None


class SupportSetObjective(Objective):
    """Base of the objectives that read and fill a support set (see the module docstring).

    Args:
        seed: seeds the selector's noise and any sampling of the subclass.
        min_fill: warm-up of the support set, as the fraction of its capacity that must be
            filled before neighbours are looked up (in [0, 1]; never with fewer rows than
            the selector's ``k``). Until then the objective's cold-start fallback (in-batch
            positives) applies. 0 (default) is the papers' behaviour; 1 waits for a full queue.
        instance_weight: weight ``w >= 0`` of an added instance term: the loss becomes
            ``L + w · NT-Xent(z1, z2; instance_tau)`` over the two views' online projections
            (SimCLR's loss, both sides carrying gradient). 0 (default) is the papers' loss.
        instance_tau: the instance term's temperature (> 0), default 0.1 (SimCLR's).
        instance_schedule: ``constant`` (default), ``linear`` (fades to 0 over
            ``instance_fade_steps``) or ``purity`` (fades as the two views' nearest
            neighbours agree: a label-free proxy of neighbour purity); see
            :mod:`medssl.objectives.instance_schedule`.
        instance_fade_steps: ``linear``'s length in steps.
        neighbour_warmup_steps: the first N training steps are SimCLR alone (default 0).

    A subclass checks its options, then calls :meth:`choose_selector` once.
    """

    def __init__(self, seed: Optional[int], min_fill: float = 0.0, instance_weight: float = 0.0,
                 instance_tau: float = 0.1, instance_schedule: str = "constant", instance_fade_steps: int = 0,
                 neighbour_warmup_steps: int = 0) -> None:
        super().__init__()
        self.generators = SeededGenerators(seed)
        self.min_fill = check_between(self.name, "min_fill", min_fill, 0.0, 1.0)
        self.instance_weight = check_between(self.name, "instance_weight", instance_weight, 0.0, None)
        self.instance_tau = check_positive(self.name, "instance_tau", instance_tau)
        schedule = check_choice(self.name, "instance_schedule", instance_schedule, SCHEDULES)
        fade = check_int(self.name, "instance_fade_steps", instance_fade_steps, 0)
        warmup = check_int(self.name, "neighbour_warmup_steps", neighbour_warmup_steps, 0)
        # only when used: the checkpoints of runs without these options keep their keys
        self.schedule: Optional[InstanceSchedule] = None
        if schedule != "constant" and self.instance_weight == 0:
            raise ConfigError(f"objective {self.name!r}: instance_schedule {schedule!r} fades the instance term, "
                              "but instance_weight is 0 (no term); set instance_weight > 0 or leave the schedule "
                              "'constant'")
        if schedule != "constant" or warmup > 0:
            try:
                self.schedule = InstanceSchedule(schedule, fade, warmup)
            except ConfigError as exc:
                raise ConfigError(f"objective {self.name!r}: {exc}") from exc

    def choose_selector(self, neighbours: SelectorSpec, default: str,
                        defaults: Mapping[str, Mapping[str, Any]]) -> None:
        """Build the selector from the config's ``neighbours`` override (or ``default``,
        with the objective's per-selector ``defaults``) and declare its ``k``."""
        self.selector = resolve_selector(self.name, neighbours, default, defaults)
        self.requirements = replace(type(self).requirements, support_set=True,
                                    neighbours_per_query=selector_k(self.selector))

    # ------------------------------------------------------------------ what a subclass says
    def views(self, outputs: ViewOutputs) -> Views:  # pragma: no cover - abstract
        """The named tensors the objective uses (checked with :meth:`two`; targets detached)."""
        raise NotImplementedError

    def query(self, v: Views) -> Tensor:  # pragma: no cover - abstract
        """Stacked query blocks ``[n·B, D]`` whose neighbours are looked up."""
        raise NotImplementedError

    def terms(self, v: Views, found: Optional[Neighbours], query: Tensor, support: SupportSet,
              generator: Optional[torch.Generator]) -> Terms:  # pragma: no cover - abstract
        """The loss from the views and the neighbours (``found`` is None at cold start)."""
        raise NotImplementedError

    def stored(self, v: Views) -> Tensor:  # pragma: no cover - abstract
        """The detached rows ``[B, D]`` this step enqueues."""
        raise NotImplementedError

    def neighbour_diagnostics(self, found: Neighbours, support: SupportSet, outputs: ViewOutputs,
                              blocks: int, weights: Optional[Tensor]) -> Diagnostics:
        """Purity / same-image rates of the found neighbours (labels, indices tiled per block)."""
        return neighbour_stats(found.rows, support, tile(outputs.labels, blocks), tile(outputs.indices, blocks),
                               weights=weights, displaced=found.displaced)

    def two(self, outputs: ViewOutputs, field_name: str) -> Tuple[Tensor, Tensor]:
        """The first two views of ``outputs.<field_name>``, with a clear error when missing."""
        a, b = require_views(self.name, field_name, getattr(outputs, field_name))[:2]
        return a, b

    def predictions_and_targets(self, outputs: ViewOutputs) -> Views:
        """``p1, p2`` (online predictions) and ``t1, t2`` (EMA-target projections, detached):
        the views of the objectives with a target network."""
        p1, p2 = self.two(outputs, "p")
        t1, t2 = (t.detach() for t in self.two(outputs, "t"))
        return {"p1": p1, "p2": p2, "t1": t1, "t2": t2}

    # ------------------------------------------------------------------ the skeleton
    def forward(
        self, outputs: ViewOutputs, support: Optional[SupportSet] = None, *,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[Tensor, Diagnostics]:
        support = require_support(self.name, support)
        v = self.views(outputs)
        schedule = self.schedule if self.training else None  # the schedules follow training steps
        if schedule is not None and schedule.warming_up():
            return self._simclr_warmup(outputs, v, support, schedule)
        query = self.query(v)
        gen = self.generators.get(query.device, generator)
        b = next(iter(v.values())).shape[0]
        blocks = query.shape[0] // b
        # Look-ups strictly before this step's enqueue: a step never finds its own rows; with
        # the queries' indices the support set leaves out older rows of their own images.
        found = look_up(self.selector, query, support, training=self.training, generator=gen,
                        min_rows=math.ceil(self.min_fill * support.capacity),
                        query_indices=tile(outputs.indices, blocks))
        terms = self.terms(v, found, query, support, gen)
        loss, extra = terms.loss, {}
        weight = self.instance_weight if schedule is None else schedule.weight(self.instance_weight)
        if weight > 0:
            # both views' online projections, as SimCLR: the objective's own terms have one
            # gradient-carrying side per pair (the other a queue row or an EMA target)
            z1, z2 = self.two(outputs, "z")
            instance = nt_xent(z1, z2, self.instance_tau)
            loss = loss + weight * instance
            extra = {"loss_objective": float(terms.loss.detach()), "loss_instance": float(instance.detach())}
        diag: Diagnostics = {"loss": float(loss.detach()), **terms.diagnostics, **extra,
                             "cold_start": float(found is None)}
        agreement = None
        if found is not None:
            diag.update(self.neighbour_diagnostics(found, support, outputs, blocks, terms.weights))
            # the first two query blocks are the two views of the batch in every objective
            agreement = view_agreement(found.rows[:b, 0], found.rows[b:2 * b, 0], support.indices)
            diag["view_agreement"] = agreement
        if schedule is not None:
            diag["instance_weight"] = weight
            schedule.observe(agreement)
        support.enqueue(self.stored(v), indices=outputs.indices, labels=outputs.labels)
        return loss, diag

    def _simclr_warmup(self, outputs: ViewOutputs, v: Views, support: SupportSet,
                       schedule: InstanceSchedule) -> Tuple[Tensor, Diagnostics]:
        """A ``neighbour_warmup_steps`` step: SimCLR's loss on the online projections; the
        support set is filled as in any step, nothing is looked up."""
        z1, z2 = self.two(outputs, "z")
        loss = nt_xent(z1, z2, self.instance_tau)
        for p in outputs.p or ():  # the predictor unused, yet in the graph: DDP expects every parameter's gradient
            loss = loss + 0.0 * p.sum()
        schedule.observe(None)
        support.enqueue(self.stored(v), indices=outputs.indices, labels=outputs.labels)
        return loss, {"loss": float(loss.detach()), "loss_instance": float(loss.detach()), "cold_start": 1.0,
                      "neighbour_warmup": 1.0, "emb_std": embedding_std(z1)}
