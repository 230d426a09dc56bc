"""When a support-set objective uses its neighbours and how much SimCLR's term weighs.

Two recipe options of every support-set objective (issue 27), kept apart from the
objectives' maths:

* ``neighbour_warmup_steps`` N: the first N training steps are SimCLR alone
  (``NT-Xent(z1, z2; instance_tau)``); the support set is still filled, so neighbours are
  ready when they start.
* ``instance_schedule``: the weight of the added instance term over training.
  ``constant`` (the default) keeps ``instance_weight``; ``linear`` fades it to 0 over
  ``instance_fade_steps`` steps (after the warm-up); ``purity`` fades it as the neighbours
  become trustworthy, measured **without labels** (labels are not there when pretraining
  for real): the fraction of images whose two views find the same nearest neighbour (the
  same image in the support set), smoothed over steps. Random neighbours agree almost never,
  neighbours that follow the image's content agree often; the weight is
  ``instance_weight * (1 - agreement)``.

The state (steps seen, smoothed agreement) is in buffers, so a resumed run continues
exactly; it exists only when one of the options is used, so the checkpoints of runs
without them keep their keys.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from medssl.errors import ConfigError

SCHEDULES = ("constant", "linear", "purity")
# per-step smoothing of the view agreement: about the last ten steps
AGREEMENT_MOMENTUM = 0.9


def view_agreement(rows_a: Tensor, rows_b: Tensor, indices: Tensor) -> float:
    """Fraction of queries whose nearest support row from view a and from view b hold the
    same image: ``rows_a``, ``rows_b`` ``[B]`` support rows, ``indices`` the support set's
    stored dataset indices (a row with an unknown index, ``-1``, agrees only with itself)."""
    ia, ib = indices[rows_a], indices[rows_b]
    same = torch.where((ia >= 0) & (ib >= 0), ia == ib, rows_a == rows_b)
    return float(same.float().mean()) if same.numel() else 0.0


class InstanceSchedule(nn.Module):
    """Steps seen and the smoothed view agreement of one objective (see the module docstring).

    Args:
        schedule: one of :data:`SCHEDULES`.
        fade_steps: ``linear``: steps over which the weight falls to 0 (>= 1).
        warmup_steps: SimCLR-only steps before neighbours are used (>= 0).
    """

    steps_seen: Tensor
    agreement: Tensor

    def __init__(self, schedule: str, fade_steps: int, warmup_steps: int) -> None:
        super().__init__()
        if schedule == "linear" and fade_steps < 1:
            raise ConfigError("instance_schedule 'linear' needs instance_fade_steps >= 1 (the steps over which "
                              f"the instance term fades to 0), got {fade_steps}")
        self.schedule, self.fade_steps, self.warmup_steps = schedule, int(fade_steps), int(warmup_steps)
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("agreement", torch.zeros((), dtype=torch.float64))

    def warming_up(self) -> bool:
        """Whether this training step is still in the SimCLR warm-up."""
        return int(self.steps_seen) < self.warmup_steps

    def weight(self, base: float) -> float:
        """The instance term's weight this step."""
        if self.schedule == "linear":
            done = max(0, int(self.steps_seen) - self.warmup_steps)
            return base * max(0.0, 1.0 - done / self.fade_steps)
        if self.schedule == "purity":
            return base * (1.0 - float(self.agreement))
        return base

    @torch.no_grad()
    def observe(self, agreement: Optional[float]) -> None:
        """One training step done, with its view agreement (None: no look-up this step)."""
        if agreement is not None:
            m = AGREEMENT_MOMENTUM
            self.agreement.mul_(m).add_((1.0 - m) * float(agreement))
        self.steps_seen.add_(1)
