"""The SSL model: backbone ``f`` + projector ``g`` (+ predictor ``q``) (+ EMA target ``f', g'``).

``SSLModel.forward(views)`` returns :class:`~medssl.models.outputs.ViewOutputs` with
``z = n(g(f(x)))``, ``p = n(q(g(f(x))))`` and ``t = n(g'(f'(x)))`` (no gradient) per view.

By default all views of a step go through the networks as ONE concatenated batch (one
backbone call instead of one per view): faster, and BatchNorm statistics are then
computed over all views together, as in SimCLR's reference code. ``per_view_bn=True``
runs each view through the networks on its own instead, so every BatchNorm layer
normalises each view with that view's own batch statistics, as lightly's and
solo-learn's training loops do. Views of different shapes (multi-crop) cannot be
concatenated and are always run one after another.

Embeddings are L2-normalised in float32 (also under autocast), so objectives receive
unit rows whatever the compute precision.

The optimiser should receive :meth:`SSLModel.online_parameters` (the target's
parameters are frozen and change only through :meth:`SSLModel.update_target`).
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.errors import ConfigError
from medssl.models.ema import EMATarget, cosine_momentum
from medssl.models.heads import PredictionHead, ProjectionHead
from medssl.models.outputs import ViewOutputs


def _normalize(x: Tensor) -> Tensor:
    return F.normalize(x.float(), dim=1)


class SSLModel(nn.Module):
    """Online network (and optional EMA target) producing per-view normalised embeddings.

    Args:
        backbone: encoder ``[B, C, H, W] -> [B, F]``.
        projector: ``[B, F] -> [B, D]``.
        predictor: ``[B, D] -> [B, D]`` or ``None``; ``nn.Identity()`` makes the
            (normalised) projections the predictions, ``p = z``.
        use_target: keep an EMA copy of (backbone, projector) giving ``t``.
        ema_base: starting EMA momentum λ0 of the cosine schedule.
        per_view_bn: forward each view separately (BatchNorm statistics per view)
            instead of one concatenated batch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        predictor: Optional[nn.Module] = None,
        use_target: bool = False,
        ema_base: float = 0.99,
        per_view_bn: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= ema_base <= 1.0:
            raise ConfigError(f"ema_base must be in [0, 1]; got {ema_base}")
        self.backbone = backbone
        self.projector = projector
        self.predictor = predictor
        self.ema_base = float(ema_base)
        self.per_view_bn = bool(per_view_bn)
        # The target copies (backbone, projector) as one Sequential; the predictor has none.
        self.target: Optional[EMATarget] = EMATarget(self._online_pair()) if use_target else None

    def _online_pair(self) -> nn.Sequential:
        # Built on the fly so the online modules are not registered twice in state_dict.
        return nn.Sequential(self.backbone, self.projector)

    @property
    def encoder(self) -> nn.Module:
        """The backbone ``f`` (what is exported and evaluated)."""
        return self.backbone

    @property
    def use_target(self) -> bool:
        return self.target is not None

    def online_parameters(self) -> Iterator[nn.Parameter]:
        """Trainable parameters (backbone, projector, predictor) for the optimiser."""
        return (p for p in self.parameters() if p.requires_grad)

    def _run(self, views: Sequence[Tensor], fn: Any) -> List[Tensor]:
        if not self.per_view_bn and all(v.shape == views[0].shape for v in views):
            return list(fn(torch.cat(list(views), dim=0)).chunk(len(views), dim=0))
        return [fn(v) for v in views]

    def forward(
        self, views: Sequence[Tensor], indices: Optional[Tensor] = None, labels: Optional[Tensor] = None
    ) -> ViewOutputs:
        """Embed each view ``[B, C, H, W]``; returns per-view ``[B, D]`` unit rows."""
        if len(views) == 0:
            raise ValueError("SSLModel.forward needs at least one view")

        def online(x: Tensor) -> Tensor:
            return self.projector(self.backbone(x))

        proj = self._run(views, online)
        z = [_normalize(g) for g in proj]
        p = None
        if isinstance(self.predictor, nn.Identity):
            p = z  # no predictor head: the projections are the predictions
        elif self.predictor is not None:
            # The predictor batches views the way the networks before it did.
            p = [_normalize(q) for q in self._run(proj, self.predictor)]
        t = None
        if self.target is not None:
            with torch.no_grad():
                t = [_normalize(x) for x in self._run(views, self.target)]
        return ViewOutputs(z=z, p=p, t=t, indices=indices, labels=labels)

    @torch.no_grad()
    def update_target(self, step: int, total_steps: int) -> Optional[float]:
        """EMA step of the target after optimiser step ``step`` of ``total_steps``.

        Returns the momentum λ used, or ``None`` (a no-op) without a target network.
        """
        if self.target is None:
            return None
        momentum = cosine_momentum(step, total_steps, self.ema_base)
        self.target.update(self._online_pair(), momentum)
        return momentum


def check_predictor_option(predictor: Union[bool, str], objective: Any) -> bool:
    """Validate ``model.predictor`` for ``objective`` (instance or class); returns whether the
    objective reads predictions. ``True`` for one that never does is refused: the head would
    never be trained."""
    if predictor not in ("auto", True, False):
        raise ConfigError(f"model.predictor must be auto, true or false; got {predictor!r}")
    uses_predictions = bool(getattr(getattr(objective, "requirements", None), "predictor", False))
    if predictor is True and not uses_predictions:
        name = getattr(objective, "name", type(objective).__name__)
        raise ConfigError(f"model.predictor=true, but objective {name!r} never reads predictions, so a "
                          "predictor head would not be trained; remove the key (auto) or set it to false")
    return uses_predictions


def build_ssl_model(
    backbone: nn.Module,
    objective: Any,
    proj_hidden: int = 2048,
    proj_dim: int = 256,
    pred_hidden: int = 4096,
    proj_layers: int = 3,
    ema_base: float = 0.99,
    proj_last_bn: bool = True,
    per_view_bn: bool = False,
    predictor: Union[bool, str] = "auto",
) -> SSLModel:
    """An :class:`SSLModel` with the heads an objective needs.

    ``objective`` is an Objective instance or class; its ``requirements.predictor`` /
    ``requirements.target`` decide whether a predictor and an EMA target are built.
    ``predictor``: ``"auto"`` builds a predictor head exactly when the objective uses
    predictions; ``False`` builds none, and an objective that uses predictions receives its
    projections as its predictions (``p = z``: the predictor is the identity); ``True``
    insists on the head and is refused for an objective that never reads predictions.
    ``ema_base`` is the target's starting EMA momentum (``model.ema_base`` in a config).
    ``proj_layers`` / ``proj_last_bn`` shape the projector (see :class:`ProjectionHead`);
    ``per_view_bn`` see :class:`SSLModel`.
    """
    num_features = getattr(backbone, "num_features", None)
    if not isinstance(num_features, int) or num_features < 1:
        raise ConfigError(
            f"backbone {type(backbone).__name__} has no integer `num_features`; build it with "
            "medssl.models.build_backbone or set the attribute to its pooled feature width"
        )
    projector = ProjectionHead(num_features, proj_hidden, proj_dim, num_layers=proj_layers, last_bn=proj_last_bn)
    needs = getattr(objective, "requirements", None)
    uses_predictions = check_predictor_option(predictor, objective)
    head: Optional[nn.Module] = None
    if uses_predictions:
        head = nn.Identity() if predictor is False else PredictionHead(proj_dim, pred_hidden)
    return SSLModel(
        backbone,
        projector,
        predictor=head,
        use_target=bool(getattr(needs, "target", False)),
        ema_base=ema_base,
        per_view_bn=per_view_bn,
    )
