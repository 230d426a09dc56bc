"""What a pretraining run is built from: data, model + objective + support set, and the
optimiser, each from a validated :class:`~medssl.train.config.PretrainConfig`.

The order of the calls matters for reproducibility: :class:`~medssl.train.loop.Pretrainer`
seeds the global RNG, then builds the data (the first sample draws augmentation noise),
then the objective and the model (their initial weights), then the optimiser.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medssl.augment.gpu import build_batch_augmentation
from medssl.augment.presets import PresetParams, eval_preprocess
from medssl.augment.views import MultiViewDataset, build_views
from medssl.errors import ConfigError
from medssl.models.backbone import build_backbone
from medssl.models.ssl_model import SSLModel, build_ssl_model
from medssl.models.sync_batchnorm import convert_sync_batchnorm
from medssl.objectives.base import Objective, Requirements
from medssl.objectives.support_set import SupportSet
from medssl.data.open import open_dataset
from medssl.registry import OBJECTIVES
from medssl.train import distributed as D
from medssl.threads import plan_workers
from medssl.train.memory_plan import check_training_memory
from medssl.train.config import PretrainConfig
from medssl.train.monitor import KNNMonitor
from medssl.train.optim import build_optimizer, build_scheduler
from medssl.train.sampler import ResumableSampler
from medssl.train.signals import protect_worker


def _collate_raw(batch: Sequence[Tuple[Any, Any, int]]) -> Tuple[torch.Tensor, Any, torch.Tensor]:
    """Stack uint8 HWC images into ``[B, C, H, W]`` uint8 for the on-device pipeline."""
    images = torch.stack([torch.from_numpy(np.ascontiguousarray(b[0])).permute(2, 0, 1) for b in batch])
    labels = torch.utils.data.default_collate([b[1] for b in batch])
    index = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    return images, labels, index


class _IndexedRaw(torch.utils.data.Dataset):
    """``(image uint8 HWC, label, index)`` for the on-device augmentation path."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, Any, int]:
        image, label = self.dataset[i]
        return image, label, i


@dataclass
class TrainingData:
    """The training set and how batches reach the model.

    ``batch_views`` (one batched augmentation per view) is set when views are made on the
    training device from raw uint8 batches; otherwise the loader's workers make them.
    ``augment_params``: the resolved augmentation (views, normalisation, export).
    """

    dataset: Any
    sampler: Any
    source: Any
    loader: DataLoader
    batch_views: Optional[List[Any]]
    in_chans: int
    steps_per_epoch: int
    total_steps: int
    knn: Optional[KNNMonitor]
    augment_params: PresetParams


def build_data(cfg: PretrainConfig, device: torch.device, dist: D.DistInfo) -> TrainingData:
    """Dataset, sampler, view pipeline, loader and (rank 0) the k-NN monitor."""
    t = cfg.train
    check_training_memory(cfg)  # before the first view or weight is allocated
    workers, why = plan_workers(t.num_workers, "train.num_workers")
    if dist.is_main:
        print(f"medssl: {workers} DataLoader worker process{'es' if workers != 1 else ''} ({why})", file=sys.stderr)
    dataset = open_dataset(cfg.data)
    if len(dataset) == 0:
        raise ConfigError(f"the training dataset {cfg.data} is empty")
    a = cfg.augment
    spec = a.resolve()  # resolved once: views, normalisation, export
    aug_device = a.device
    if aug_device == "auto":
        aug_device = "cuda" if device.type == "cuda" else "cpu"
    if aug_device == "cuda" and device.type != "cuda":
        raise ConfigError("augment.device is 'cuda' but training runs on the CPU; use 'auto', 'cpu' or 'batch'")
    # 'cuda' and 'batch' both run the batched pipeline on the training device ('batch'
    # also on a CPU, in the main process); 'cpu' augments per image in the workers.
    on_device_aug = aug_device in ("cuda", "batch")
    make_sampler = getattr(dataset, "make_sampler", None)  # sharded sets order their own epochs
    if make_sampler is not None:
        sampler = make_sampler(t.batch_size, seed=cfg.seed, rank=dist.rank,
                               world_size=dist.world_size, num_workers=workers)
    else:
        sampler = ResumableSampler(len(dataset), t.batch_size, seed=cfg.seed,
                                   rank=dist.rank, world_size=dist.world_size)
    if sampler.batches_per_epoch == 0:
        raise ConfigError(
            f"the training set has {len(dataset)} images, fewer than one batch of "
            f"train.batch_size={t.batch_size} x {dist.world_size} process(es); lower train.batch_size"
        )
    batch_views: Optional[List[Any]] = None
    if on_device_aug:
        batch_views = [build_batch_augmentation(spec, a.image_size) for _ in range(a.num_views)]
        source: Any = _IndexedRaw(dataset)
        collate: Any = _collate_raw
        sample = batch_views[0](_collate_raw([source[0]])[0].to(device))
        in_chans = int(sample.shape[1])
    else:
        views = build_views(spec, a.image_size, n_views=a.num_views)
        source = MultiViewDataset(dataset, views, seed=cfg.seed)
        collate = None
        in_chans = int(source[0][0][0].shape[0])
    loader = DataLoader(
        source,
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
        # workers ignore the scheduler's group signals; the loop ends them (train/signals.py)
        worker_init_fn=protect_worker if workers > 0 else None,
        # its own generator: creating an epoch's iterator must not move the global RNG
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    steps_per_epoch = sampler.batches_per_epoch
    knn: Optional[KNNMonitor] = None
    if cfg.val_data is not None and t.knn_every > 0 and dist.is_main:
        mean, std = spec.plan().normalisation(in_chans)
        knn = KNNMonitor(dataset, open_dataset(cfg.val_data),
                         eval_preprocess(mean, std, in_chans, a.image_size), k=t.knn_k)
    return TrainingData(dataset, sampler, source, loader, batch_views, in_chans, steps_per_epoch,
                        t.max_steps or t.epochs * steps_per_epoch, knn, spec)


@dataclass
class TrainingModel:
    """The networks and state one step runs: ``ddp_model`` wraps ``model`` under DDP;
    ``gather``: all-gather each step's outputs across ranks (``train.gather_distributed``)."""

    model: SSLModel
    ddp_model: nn.Module
    objective: Objective
    support: Optional[SupportSet]
    gather: bool
    channels_last: bool
    objective_gen: torch.Generator


def exclusion_groups(cfg: PretrainConfig, dataset: Any) -> Optional[torch.Tensor]:
    """The slide of each training image when ``support_set.exclude_same_slide`` is on (from
    the data set's ``slide_index()``), else None; a data set without slides is a ConfigError."""
    if not cfg.support_set.exclude_same_slide:
        return None
    slide_index = getattr(dataset, "slide_index", None)
    if slide_index is None:
        raise ConfigError(
            f"support_set.exclude_same_slide is true but the training data ({cfg.data.get('name')!r}) has no "
            "slides (no slide_index()); it applies to tiles of whole-slide images (data name wsi_tiles). "
            "Set it to false"
        )
    return torch.as_tensor(slide_index(), dtype=torch.long)


def build_model(cfg: PretrainConfig, in_chans: int, dataset_size: int, device: torch.device,
                dist: D.DistInfo, groups: Optional[torch.Tensor] = None) -> TrainingModel:
    """The objective (first: its parameters draw from the RNG before the model's), the SSL
    model with the heads the objective requires, and the support set it requires
    (``groups``: :func:`exclusion_groups`)."""
    m = cfg.model
    obj_cfg = dict(cfg.objective)
    # An objective with learnable parts on the embeddings (SNCLR's attention) declares the
    # option that sizes them; it gets the model's width unless the config sets it.
    declared: Requirements = getattr(OBJECTIVES.get(obj_cfg["name"]), "requirements", Requirements())
    width_option = declared.embedding_width_option
    if width_option is not None and width_option not in obj_cfg:
        obj_cfg[width_option] = m.proj_dim
    objective = OBJECTIVES.build(obj_cfg)
    needs: Requirements = objective.requirements
    try:
        backbone = build_backbone(m.backbone, in_chans=in_chans, image_size=cfg.augment.image_size,
                                  small_input_stem=m.small_input_stem, weights=m.weights,
                                  strict_weights=not m.partial_weights)
    except ConfigError as exc:
        if "do not match the model" not in str(exc):
            raise
        raise ConfigError(f"model.weights: {exc} (backbone {m.backbone!r}). Use weights of this architecture, or set "
                          "model.partial_weights: true to load the matching tensors and keep the rest at random "
                          "init") from exc
    model: nn.Module = build_ssl_model(backbone, objective, proj_hidden=m.proj_hidden, proj_dim=m.proj_dim,
                                       proj_layers=m.proj_layers, proj_last_bn=m.proj_last_bn,
                                       per_view_bn=m.per_view_bn, predictor=m.predictor,
                                       pred_hidden=m.pred_hidden, ema_base=m.ema_base)
    if m.sync_batchnorm and dist.enabled:
        model = convert_sync_batchnorm(model, device.type)
    # channels_last on CUDA and on a CPU (1.1-1.3x faster per step there: docs/benchmarks.md)
    channels_last = cfg.train.channels_last
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective = objective.to(device)
    # Each rank seeded its init with seed + rank; DDP syncs the model, this the objective.
    D.broadcast_module_(objective)
    # The loop all-gathers each step's outputs, so the objective sees the global batch
    # and enqueues the same rows on every rank: the support set must not gather again.
    gather = cfg.train.gather_distributed and dist.enabled
    support: Optional[SupportSet] = None
    if needs.support_set:
        support = SupportSet(cfg.support_set.rows_for(dataset_size), m.proj_dim, gather_distributed=False,
                             dataset_size=dataset_size, exclude_same_image=cfg.support_set.exclude_same_image,
                             exclusion_groups=groups).to(device)
        k = needs.neighbours_per_query
        if k > support.capacity:  # it would stay in cold start (no neighbours) for ever
            raise ConfigError(
                f"objective.k={k} is larger than the support set, which holds at most "
                f"{support.capacity} rows (support_set.size={cfg.support_set.rows_for(dataset_size)}, training set "
                f"{dataset_size} images); lower objective.k or raise support_set.size"
            )
    ddp_model: nn.Module = model
    if dist.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    objective_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    return TrainingModel(model, ddp_model, objective, support, gather, channels_last,  # type: ignore[arg-type]
                         objective_gen)


def build_optimisation(cfg: PretrainConfig, model: nn.Module, objective: nn.Module, total_steps: int,
                       amp_dtype: Optional[torch.dtype]) -> Tuple[torch.optim.Optimizer, Any, torch.amp.GradScaler]:
    """Optimiser over the model's and the objective's parameters, its schedule, and the
    gradient scaler (active only for float16 autocast)."""
    o = cfg.optim
    optimizer = build_optimizer(o.name, [model, objective], lr=o.lr, weight_decay=o.weight_decay,
                                momentum=o.momentum, betas=o.betas)
    scheduler = build_scheduler(optimizer, total_steps, o.warmup_for(total_steps), o.final_lr_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return optimizer, scheduler, scaler


def warmup_notice(cfg: PretrainConfig, total_steps: int) -> Optional[str]:
    """A start-up warning when the warm-up fills the whole run (the learning rate never
    reaches ``optim.lr``), else None."""
    o = cfg.optim
    warmup = o.warmup_for(total_steps)
    if warmup < total_steps:
        return None
    if o.warmup_fraction is not None:
        return (f"warning: optim.warmup_fraction={o.warmup_fraction:g} gives {warmup} warm-up steps, not fewer than "
                f"this run's {total_steps} steps, so the learning rate never reaches optim.lr={o.lr:g}; lower it")
    return (f"warning: optim.warmup_steps={o.warmup_steps} is not shorter than this run's {total_steps} steps, "
            f"so the learning rate never reaches optim.lr={o.lr:g}; lower it or set optim.warmup_fraction "
            "(e.g. 0.05) instead, which scales with the run's length")


def reshard_loader(data_loader: DataLoader, sampler: Any, per_rank: int, dist: D.DistInfo) -> Tuple[Any, DataLoader]:
    """The sampler and loader of a run resumed on another number of processes: the same
    seeded global order, cut into ``dist.world_size`` shares of ``per_rank`` images
    (:func:`medssl.train.resume.per_rank_batch`). Only :class:`ResumableSampler` orders
    are a function of the global batch alone; a dataset with its own sampler (slide
    shards) is refused."""
    if not isinstance(sampler, ResumableSampler):
        raise ConfigError(
            f"this training set orders its own epochs ({type(sampler).__name__}), which depends on the number of "
            "processes: resume it on the number it was started with"
        )
    new = ResumableSampler(sampler.length, per_rank, seed=sampler.seed, rank=dist.rank,
                           world_size=dist.world_size, shuffle=sampler.shuffle)
    old = data_loader
    loader = DataLoader(old.dataset, batch_size=per_rank, sampler=new, num_workers=old.num_workers,
                        collate_fn=old.collate_fn, pin_memory=old.pin_memory, drop_last=True,
                        persistent_workers=old.persistent_workers, worker_init_fn=old.worker_init_fn,
                        generator=old.generator)
    return new, loader
