"""Models: the timm backbone factory, projection/prediction heads, the EMA target and
the SSL model that ties them together. ``model.backbone`` in a config is any timm model
name, built by :func:`build_backbone`."""

from medssl.models.backbone import apply_small_input_stem, build_backbone, load_backbone_weights
from medssl.models.ema import EMATarget, cosine_momentum, ema_update
from medssl.models.heads import PredictionHead, ProjectionHead
from medssl.models.outputs import ViewOutputs
from medssl.models.ssl_model import SSLModel, build_ssl_model

__all__ = [
    "build_backbone",
    "load_backbone_weights",
    "apply_small_input_stem",
    "ProjectionHead",
    "PredictionHead",
    "EMATarget",
    "cosine_momentum",
    "ema_update",
    "SSLModel",
    "ViewOutputs",
    "build_ssl_model",
]
