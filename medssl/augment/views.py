"""Multi-view augmentation: one image -> N augmented views, and a dataset wrapper.

Reproducibility: :class:`MultiViewDataset` seeds every item from
``SeedSequence([seed, epoch, index])``. The views of item ``i`` in epoch ``e`` are
therefore the same whatever the number of DataLoader workers, which worker handles the
item, or the order in which items are drawn, and they change from epoch to epoch. The
epoch lives in a shared-memory tensor, so :meth:`MultiViewDataset.set_epoch` reaches
workers even with ``persistent_workers=True``. :func:`seed_worker` additionally seeds the
global numpy / ``random`` / torch state of each worker from (seed, worker id, epoch), for
any third-party code that draws from global state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from medssl.augment.pipeline import Augment, RngLike, as_numpy_rng
from medssl.augment.presets import PresetParams, build_augmentation
from medssl.config import check_keys
from medssl.errors import ConfigError

ViewSpec = Union[str, Mapping[str, Any], PresetParams]
Transform = Callable[[np.ndarray, np.random.Generator], torch.Tensor]


class MultiView:
    """Callable ``(image, rng) -> list of N float tensors (C, S, S)``, one transform per view.

    Asymmetric recipes (BYOL, MoCo v3: blur p=1.0 on view 1 and p=0.1 on view 2) use
    one transform per view; a symmetric recipe repeats one transform.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        if len(transforms) < 1:
            raise ConfigError("a multi-view augmentation needs at least one view")
        self.transforms = list(transforms)

    @property
    def n_views(self) -> int:
        return len(self.transforms)

    def __call__(self, image: np.ndarray, rng: RngLike = None) -> List[torch.Tensor]:
        gen = as_numpy_rng(rng)
        return [t(image, gen) for t in self.transforms]


def build_views(spec: Union[ViewSpec, Sequence[ViewSpec]], image_size: int, n_views: int = 2) -> MultiView:
    """``spec``: one preset name / mapping used for ``n_views`` views, or a list of per-view
    specs (its length sets the number of views). A per-view mapping without ``name``
    inherits nothing: write each view in full, or use the same preset with overrides."""
    if isinstance(spec, (str, Mapping, PresetParams)):
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
            raise ConfigError(f"augment views must be a positive integer, got {n_views!r}")
        aug = build_augmentation(spec, image_size)
        return MultiView([aug] * n_views)
    if not isinstance(spec, Sequence) or len(spec) == 0:
        raise ConfigError(f"augment views must be a preset, a mapping or a non-empty list of them, got {spec!r}")
    return MultiView([build_augmentation(s, image_size) for s in spec])


@dataclass(frozen=True)
class AugmentSection:
    """A parsed ``augment:`` config mapping."""

    views: Union[Mapping[str, Any], List[Mapping[str, Any]]]  # one spec, or one per view
    n_views: int
    image_size: Optional[int]
    device: str


def parse_augment_section(section: Any, source: str = "config") -> AugmentSection:
    """Split an ``augment:`` mapping into the preset spec and the keys that are not preset
    parameters: ``image_size``, ``device`` (auto|cpu|cuda), ``n_views`` (default 2) and
    ``views`` (a list of per-view mappings, which then sets the number of views).
    Preset parameters are validated later, by :func:`build_views`."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}: expected a mapping under the key 'augment', got {type(section).__name__}")
    if "preset" in section:
        section = _from_pretrain_schema(section, source)
    rest = dict(section)
    image_size = rest.pop("image_size", None)
    device = rest.pop("device", "auto")
    n_views = rest.pop("n_views", 2)
    views = rest.pop("views", None)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)):
        raise ConfigError(f"{source}: augment.image_size must be an integer, got {image_size!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{source}: augment.device must be one of auto, cpu, cuda, got {device!r}")
    if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
        raise ConfigError(f"{source}: augment.n_views must be a positive integer, got {n_views!r}")
    if views is not None:
        if not isinstance(views, list) or not views or not all(isinstance(v, (Mapping, str)) for v in views):
            raise ConfigError(f"{source}: augment.views must be a non-empty list of per-view mappings, got {views!r}")
        if rest:
            raise ConfigError(
                f"{source}: augment.views is given, so put preset parameters inside each view, not beside it "
                f"(found {', '.join(sorted(rest))})"
            )
        return AugmentSection(list(views), len(views), image_size, device)
    return AugmentSection(rest, n_views, image_size, device)


def _from_pretrain_schema(section: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """A pretraining config's ``augment:`` (``preset``, ``params``, ``image_size``,
    ``num_views``, ``device``: :class:`medssl.train.config.AugmentConfig`) in the form above,
    so ``medssl augment preview`` reads a pretraining config as it is written."""
    check_keys(section, ["preset", "image_size", "num_views", "device", "params"], source, "augment")
    params = section.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{source}: augment.params must be a mapping, got {params!r}")
    device = section.get("device", "auto")
    out: Dict[str, Any] = {**params, "name": section["preset"], "n_views": section.get("num_views", 2),
                           "device": "auto" if device == "batch" else device}  # the preview ignores device
    if section.get("image_size") is not None:
        out["image_size"] = section["image_size"]
    return out


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one item in one epoch (independent streams per (seed, epoch, index))."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


class MultiViewDataset(Dataset):
    """Wraps a dataset of ``(image, label)`` into ``(views: list[Tensor], label, index)``.

    The index lets the objective look items up in its support set.
    """

    def __init__(self, dataset: Any, views: Union[MultiView, Augment, Transform], seed: int = 0) -> None:
        self.dataset = dataset
        self.views = views
        self.seed = int(seed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations :meth:`__getitem__` draws (visible to workers)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[List[torch.Tensor], Any, int]:
        image, label = self.dataset[index]
        out = self.views(image, item_rng(self.seed, self.epoch, index))
        views = out if isinstance(out, list) else [out]
        return views, label, int(index)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` seeding global RNGs from (base seed, worker id, epoch).

    Our transforms draw only from the per-item generator; this protects code that uses
    global state. The base seed is the DataLoader's (set it with ``generator=``).
    """
    info = torch.utils.data.get_worker_info()
    base = torch.initial_seed() if info is None else info.seed - worker_id
    epoch = getattr(getattr(info, "dataset", None), "epoch", 0) if info is not None else 0
    ss = np.random.SeedSequence([int(base) % 2**63, int(worker_id), int(epoch)])
    s = int(ss.generate_state(1, dtype=np.uint64)[0])
    np.random.seed(s % 2**32)
    random.seed(s)
    torch.manual_seed(s)
