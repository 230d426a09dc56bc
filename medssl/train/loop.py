"""The pretraining loop: objective-agnostic, resumable, distributed-aware.

One step: views of a batch -> :class:`~medssl.models.ssl_model.SSLModel` ->
:class:`~medssl.objectives.base.ViewOutputs` (all-gathered across ranks) ->
``objective(outputs, support_set) -> (loss, diagnostics)`` -> backward -> optimiser,
scheduler and EMA-target steps. Everything that influences the next step (weights,
target, support set, optimiser, scheduler, scaler, every RNG, the data position) is in the
checkpoint, so a resumed CPU run ends with bitwise the same weights as an uninterrupted
one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medssl.checkpoint_io import capture_rng_state, load_checkpoint, restore_rng_state
from medssl.config import to_dict
from medssl.device import resolve_device
from medssl.errors import ConfigError, MedSSLError
from medssl.objectives.base import Requirements
from medssl.progress import Progress
from medssl.provenance import run_provenance
from medssl.train import distributed as D
from medssl.train.checkpoint_rotation import CheckpointManager
from medssl.train.config import PretrainConfig
from medssl.train.metrics_log import MetricsLogger, keep_until, plot_metrics, read_jsonl, write_csv
from medssl.train.monitor import HealthMonitor, KNNMonitor
from medssl.train.optim import build_optimizer, build_scheduler
from medssl.train.sampler import ResumableSampler


@dataclass
class RunResult:
    """What a finished (or stopped) run left behind."""

    run_dir: Path
    steps: int
    last_loss: float
    checkpoint: Optional[Path]
    encoder: Optional[Path]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_amp(name: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype, or None. AMP only runs on CUDA; 'auto' prefers bf16."""
    if device.type != "cuda" or name == "off":
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if name == "bf16" else torch.float16


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


class Pretrainer:
    """Builds every component from a :class:`PretrainConfig` and runs the loop.

    Args:
        cfg: the validated config.
        run_dir: where outputs go (default ``cfg.out_dir``).
        progress: show a progress bar (rank 0 only).
    """

    def __init__(self, cfg: PretrainConfig, run_dir: Optional[Path] = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        t = cfg.train
        probe = torch.device("cuda") if (t.device != "cpu" and torch.cuda.is_available()) else torch.device("cpu")
        self.dist = D.init_distributed(probe.type)
        self.device = resolve_device(t.device, "train.device", self.dist.local_rank)
        self.run_dir = Path(run_dir or cfg.out_dir)
        self.amp_dtype = resolve_amp(t.amp, self.device)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.device.type == "cuda")
        seed_everything(cfg.seed + self.dist.rank)
        self._build_data()
        self._build_model()
        self._build_optim()
        self.ckpts = CheckpointManager(self.run_dir, keep_last=t.keep_last)
        self.health = HealthMonitor(t.collapse_std, t.collapse_patience)
        self.step = 0
        self.last_checkpoint: Optional[Path] = None
        self._stop_signal: Optional[int] = None
        self._pending_signal: Optional[int] = None  # received, not yet agreed by all ranks

    # ------------------------------------------------------------------ building
    def _build_data(self) -> None:
        from medssl.augment.gpu import build_batch_augmentation
        from medssl.augment.views import MultiViewDataset, build_views
        from medssl.data.open import open_dataset

        cfg, t = self.cfg, self.cfg.train
        self.dataset = open_dataset(cfg.data)
        if len(self.dataset) == 0:
            raise ConfigError(f"the training dataset {cfg.data} is empty")
        a = cfg.augment
        spec = self.augment_params = a.resolve()  # resolved once: views, normalisation, export
        aug_device = a.device
        if aug_device == "auto":
            aug_device = "cuda" if self.device.type == "cuda" else "cpu"
        if aug_device == "cuda" and self.device.type != "cuda":
            raise ConfigError("augment.device is 'cuda' but training runs on the CPU; use 'auto', 'cpu' or 'batch'")
        # 'cuda' and 'batch' both run the batched pipeline on the training device ('batch'
        # also on a CPU, in the main process); 'cpu' augments per image in the workers.
        self.on_device_aug = aug_device in ("cuda", "batch")
        make_sampler = getattr(self.dataset, "make_sampler", None)  # sharded sets order their own epochs
        if make_sampler is not None:
            self.sampler = make_sampler(t.batch_size, seed=cfg.seed, rank=self.dist.rank,
                                        world_size=self.dist.world_size, num_workers=t.num_workers)
        else:
            self.sampler = ResumableSampler(len(self.dataset), t.batch_size, seed=cfg.seed,
                                            rank=self.dist.rank, world_size=self.dist.world_size)
        if self.sampler.batches_per_epoch == 0:
            raise ConfigError(
                f"the training set has {len(self.dataset)} images, fewer than one batch of "
                f"train.batch_size={t.batch_size} x {self.dist.world_size} process(es); lower train.batch_size"
            )
        if self.on_device_aug:
            self.batch_views = [build_batch_augmentation(spec, a.image_size) for _ in range(a.num_views)]
            source: Any = _IndexedRaw(self.dataset)
            collate = _collate_raw
            sample = self.batch_views[0](_collate_raw([source[0]])[0].to(self.device))
            self.in_chans = int(sample.shape[1])
        else:
            views = build_views(spec, a.image_size, n_views=a.num_views)
            source = MultiViewDataset(self.dataset, views, seed=cfg.seed)
            collate = None
            self.in_chans = int(source[0][0][0].shape[0])
        self.train_source = source
        workers = t.num_workers
        self.loader = DataLoader(
            source,
            batch_size=t.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            persistent_workers=workers > 0,
            # its own generator: creating an epoch's iterator must not move the global RNG
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.total_steps = t.max_steps or t.epochs * self.steps_per_epoch
        self.knn: Optional[KNNMonitor] = None
        if cfg.val_data is not None and t.knn_every > 0 and self.dist.is_main:
            self.knn = KNNMonitor(self.dataset, open_dataset(cfg.val_data), self._eval_preprocess(), k=t.knn_k)

    def _normalisation(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        return self.augment_params.plan().normalisation(self.in_chans)

    def _eval_preprocess(self) -> Any:
        """Deterministic preprocessing with the training normalisation (for monitoring/export)."""
        from medssl.augment.presets import eval_preprocess

        mean, std = self._normalisation()
        return eval_preprocess(mean, std, self.in_chans, self.cfg.augment.image_size)

    def _build_model(self) -> None:
        from medssl.models.backbone import build_backbone
        from medssl.models.ssl_model import build_ssl_model
        from medssl.objectives.support_set import SupportSet
        from medssl.registry import OBJECTIVES

        cfg, m = self.cfg, self.cfg.model
        obj_cfg = dict(cfg.objective)
        # An objective with learnable parts on the embeddings (SNCLR's attention) declares the
        # option that sizes them; it gets the model's width unless the config sets it.
        declared: Requirements = getattr(OBJECTIVES.get(obj_cfg["name"]), "requirements", Requirements())
        width_option = declared.embedding_width_option
        if width_option is not None and width_option not in obj_cfg:
            obj_cfg[width_option] = m.proj_dim
        self.objective = OBJECTIVES.build(obj_cfg)
        needs: Requirements = self.objective.requirements
        backbone = build_backbone(m.backbone, in_chans=self.in_chans, image_size=cfg.augment.image_size,
                                  small_input_stem=m.small_input_stem, weights=m.weights)
        model = build_ssl_model(backbone, self.objective, proj_hidden=m.proj_hidden, proj_dim=m.proj_dim,
                                pred_hidden=m.pred_hidden, ema_base=m.ema_base)
        if m.sync_batchnorm and self.dist.enabled:
            from medssl.models.sync_batchnorm import convert_sync_batchnorm

            model = convert_sync_batchnorm(model, self.device.type)
        self.channels_last = cfg.train.channels_last and self.device.type == "cuda"
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.objective = self.objective.to(self.device)
        # Each rank seeded its init with seed + rank; DDP syncs the model, this the objective.
        D.broadcast_module_(self.objective)
        # The loop all-gathers each step's outputs, so the objective sees the global batch
        # and enqueues the same rows on every rank: the support set must not gather again.
        self.gather = cfg.train.gather_distributed and self.dist.enabled
        self.support: Optional[SupportSet] = None
        if needs.support_set:
            self.support = SupportSet(cfg.support_set.size, m.proj_dim, gather_distributed=False,
                                      dataset_size=len(self.dataset)).to(self.device)
            k = needs.neighbours_per_query
            if k > self.support.capacity:  # it would stay in cold start (no neighbours) for ever
                raise ConfigError(
                    f"objective.k={k} is larger than the support set, which holds at most "
                    f"{self.support.capacity} rows (support_set.size={cfg.support_set.size}, training set "
                    f"{len(self.dataset)} images); lower objective.k or raise support_set.size"
                )
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.objective_gen = torch.Generator(device=self.device).manual_seed(cfg.seed)

    def _build_optim(self) -> None:
        o = self.cfg.optim
        self.optimizer = build_optimizer(o.name, [self.model, self.objective], lr=o.lr, weight_decay=o.weight_decay,
                                         momentum=o.momentum, betas=o.betas)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, o.warmup_steps, o.final_lr_ratio)
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {
            "format": "medssl-pretrain-v1",
            "step": self.step,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "support_set": self.support.state_dict() if self.support is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "objective_rng": self.objective_gen.get_state(),
            "health": self.health.state_dict(),
            "provenance": self._provenance,
        }

    def load_state_dict(self, state: Dict[str, Any], source: Path) -> None:
        if state.get("format") != "medssl-pretrain-v1":
            raise MedSSLError(f"{source} is not a medssl pretraining checkpoint (format {state.get('format')!r})")
        try:
            self.model.load_state_dict(state["model"])
            self.objective.load_state_dict(state["objective"])
            if self.support is not None:
                self.support.load_state_dict(state["support_set"])
        except (RuntimeError, KeyError, TypeError) as exc:
            detail = " ".join(str(exc).split())  # torch's message spans lines; ours is one
            detail = detail if len(detail) <= 400 else detail[:400] + " ..."
            raise MedSSLError(
                f"{source} does not match this config's model/objective/support set ({detail}). "
                "Resume with the config the run was started with (saved as config.yaml in the run directory)."
            ) from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.objective_gen.set_state(state["objective_rng"])
        self.health.load_state_dict(state.get("health", {}))
        self.step = int(state["step"])

    def _resume_path(self) -> Optional[Path]:
        r = self.cfg.train.resume
        if r is False:
            return None
        if r is True or r == "auto":
            found = self.ckpts.latest()
            if found is None and r is True:
                raise MedSSLError(f"train.resume is true but {self.ckpts.dir} holds no checkpoint")
            return found
        path = Path(str(r))
        if not path.is_file():
            raise MedSSLError(f"train.resume points at {path}, which does not exist")
        return path

    # ------------------------------------------------------------------ running
    def _views(self, batch: Any) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        if self.on_device_aug:
            images, labels, index = batch
            images = images.to(self.device, non_blocking=True)
            # Parameters are drawn on the CPU (then applied on the device): a CPU generator,
            # seeded per (seed, step, rank) so a resumed run draws the same views.
            gen = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + self.step * 97 + self.dist.rank) % 2**63)
            views = [aug(images, generator=gen) for aug in self.batch_views]
        else:
            views, labels, index = batch
            views = [v.to(self.device, non_blocking=True) for v in views]
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views, labels, index

    def _gather_outputs(self, out: Any) -> Any:
        from medssl.models.outputs import ViewOutputs

        if not self.gather:
            return out
        g = D.gather_with_grad
        return ViewOutputs(
            z=[g(x) for x in out.z],
            p=[g(x) for x in out.p] if out.p is not None else None,
            t=[D.gather_no_grad(x) for x in out.t] if out.t is not None else None,
            indices=D.gather_no_grad(out.indices) if out.indices is not None else None,
            labels=D.gather_no_grad(out.labels) if out.labels is not None else None,
        )

    def train_step(self, batch: Any) -> Tuple[float, Dict[str, float]]:
        views, labels, index = self._views(batch)
        labels_t = labels.to(self.device) if torch.is_tensor(labels) and labels.ndim == 1 else None
        index = index.to(self.device)
        self.model.train()
        self.objective.train()
        amp = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            out = self.ddp_model(views, indices=index, labels=labels_t)
        out = self._gather_outputs(out)
        loss, diag = self.objective(out, self.support, generator=self.objective_gen)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        obj_grads = [p.grad for p in self.objective.parameters() if p.grad is not None]
        D.all_reduce_mean_(obj_grads)
        grad_norm = None
        if self.cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        momentum = self.model.update_target(self.step, self.total_steps)
        loss_value = float(loss.detach())
        diag = dict(diag)
        if grad_norm is not None:
            diag["grad_norm"] = grad_norm
        if momentum is not None:
            diag["ema_momentum"] = momentum
        return loss_value, diag

    def _save(self) -> Optional[Path]:
        if self.dist.is_main:
            self.last_checkpoint = self.ckpts.save(self.state_dict(), self.step)
        D.barrier()
        return self.last_checkpoint

    def _install_signal_handlers(self) -> Dict[int, Any]:
        """SIGTERM/SIGINT finish the current step, save a checkpoint and exit cleanly."""
        previous: Dict[int, Any] = {}
        if threading_main():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.dist.enabled:  # acted on only once all ranks agree (see fit)
            self._pending_signal = signum
        else:
            self._stop_signal = signum

    def fit(self) -> RunResult:
        """Run (or resume) training to ``total_steps``; returns what it wrote."""
        cfg, t = self.cfg, self.cfg.train
        main = self.dist.is_main
        cfg_dict = to_dict(cfg)
        self._provenance = run_provenance(cfg_dict, [cfg.data, cfg.val_data]) if main else {}
        resume = self._resume_path()
        if self.dist.enabled:
            # Rank 0 decides, so no rank resumes while another starts afresh (e.g. a node
            # that cannot see the checkpoint directory).
            resume = D.broadcast_object(resume if main else None)
            if resume is not None and not Path(resume).is_file():
                raise D.DistributedError(
                    f"rank {self.dist.rank} cannot read the checkpoint {resume} that rank 0 resumes from; "
                    "out_dir must be on a filesystem every node can read"
                )
        if resume is not None:
            self.load_state_dict(load_checkpoint(resume, map_location=self.device), resume)
            self.last_checkpoint = resume
            if main:
                print(f"medssl: resumed from {resume} at step {self.step}", file=sys.stderr)
        elif main and self.ckpts.latest() is not None:
            raise MedSSLError(
                f"{self.run_dir} already holds checkpoints of another run. Pass --resume to continue it, "
                "or choose another out_dir."
            )
        if main:
            import yaml

            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
                logger = MetricsLogger(self.run_dir, enabled=True)
            except OSError as exc:  # a path under a file, a read-only disk, no permission
                raise ConfigError(
                    f"cannot write the run directory {self.run_dir} (out_dir): {exc.strerror or exc}; "
                    "choose a writable out_dir"
                ) from exc
        else:
            logger = MetricsLogger(self.run_dir, enabled=False)
        # Forget rows logged after the checkpoint we resume from, or all rows when starting
        # afresh (a run killed before its first checkpoint leaves rows for steps it redoes).
        if main and logger.path.stat().st_size > 0:
            rows = keep_until(read_jsonl(logger.path), self.step)
            logger.close()
            logger.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            logger = MetricsLogger(self.run_dir, enabled=True)
        previous = self._install_signal_handlers()
        bar = Progress(self.total_steps, "pretrain", enabled=main and self.progress, unit="step", initial=self.step)
        last_loss = math.nan
        t0, seen = time.perf_counter(), 0
        try:
            while self.step < self.total_steps and self._stop_signal is None:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                self.sampler.set_position(epoch, offset)
                if hasattr(self.train_source, "set_epoch"):
                    self.train_source.set_epoch(epoch)
                for batch in self.loader:
                    last_loss, diag = self.train_step(batch)
                    if self.dist.enabled:  # a signal may reach the ranks at different steps
                        self._stop_signal = D.agree_on_stop(self._stop_signal or self._pending_signal,
                                                            self.device)
                    seen += t.batch_size * self.dist.world_size
                    self.health.check(self.step, last_loss, diag.get("emb_std"),
                                      str(self.last_checkpoint) if self.last_checkpoint else None)
                    if self.step % t.log_every == 0 or self.step == self.total_steps:
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        row = {"step": self.step, "epoch": epoch, "loss": last_loss,
                               "lr": self.scheduler.get_last_lr()[0], "images_per_s": seen / elapsed}
                        row.update({k: v for k, v in diag.items() if k != "loss"})
                        logger.log(row)
                        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{row['lr']:.2e}",
                                            img_s=f"{row['images_per_s']:.0f}")
                    if self.knn is not None and (self.step % t.knn_every == 0 or self.step == self.total_steps):
                        knn = self.knn(self.model.encoder)
                        logger.log({"step": self.step, **knn})
                        bar.write(f"step {self.step}: " + ", ".join(f"{k}={v:.4f}" for k, v in knn.items()))
                    bar.update(1)
                    if self.step % t.ckpt_every == 0 and self.step < self.total_steps:
                        self._save()
                    if self.step >= self.total_steps or self._stop_signal is not None:
                        break
            self._save()
        except torch.distributed.DistError as exc:  # a peer died or hung: say so in one line
            detail = " ".join(str(exc).split())[:300]
            raise D.DistributedError(
                f"rank {self.dist.rank}: a collective with the other processes failed at step {self.step} "
                f"({detail}). Another rank died, hung or lost its connection; collectives wait at most "
                f"${D.TIMEOUT_ENV} seconds (default 600). Resume with --resume from "
                f"{self.last_checkpoint or 'the start (no checkpoint was written)'}."
            ) from exc
        finally:
            bar.close()
            logger.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        encoder = self._finish(main) if self.step >= self.total_steps else None
        if self._stop_signal is not None and main:
            print(f"medssl: stopped by signal {self._stop_signal} at step {self.step}; "
                  f"resume with --resume (checkpoint {self.last_checkpoint})", file=sys.stderr)
        return RunResult(self.run_dir, self.step, last_loss, self.last_checkpoint, encoder)

    def _finish(self, main: bool) -> Optional[Path]:
        if not main:
            return None
        from medssl.models.export import export_encoder

        rows = read_jsonl(self.run_dir / "metrics.jsonl")
        if rows:
            write_csv(rows, self.run_dir / "metrics.csv")
            name = self.cfg.objective["name"]
            plot_metrics(rows, self.run_dir / "loss.png", ["loss", "lr"], title=f"{name}: loss and learning rate")
            plot_metrics(rows, self.run_dir / "monitor.png",
                         ["emb_std", "nn_purity", "nn_same_image", "weight_entropy", "knn_top1", "knn_auc"],
                         title=f"{name}: representation health during pretraining")
        a = self.cfg.augment
        mean, std = self._normalisation()
        return export_encoder(
            self.model.encoder,
            self.run_dir / "encoder.safetensors",
            backbone=self.cfg.model.backbone,
            in_chans=self.in_chans,
            image_size=a.image_size,
            small_input_stem=self.cfg.model.small_input_stem,
            mean=list(mean),
            std=list(std),
            extra={"objective": self.cfg.objective.get("name"), "steps": self.step},
        )


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def pretrain(cfg: PretrainConfig, run_dir: Optional[Path] = None, progress: bool = True) -> RunResult:
    """Build a :class:`Pretrainer` from ``cfg`` and run it; the process group is left as found.

    The run directory is locked while the run writes to it (rank 0 holds
    :class:`~medssl.runlock.RunLock`): a second run on the same ``out_dir`` is refused,
    naming the PID of the first. Building comes first, so a config that cannot run
    (unknown data, a backbone that cannot take the image size) writes nothing.
    """
    from medssl.runlock import RunLock

    trainer = Pretrainer(cfg, run_dir=run_dir, progress=progress)
    try:
        with RunLock(trainer.run_dir, "out_dir") if trainer.dist.is_main else contextlib.nullcontext():
            return trainer.fit()
    finally:
        if os.environ.get("WORLD_SIZE", "1") != "1":
            D.cleanup()
