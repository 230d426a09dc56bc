"""The pretraining loop: objective-agnostic, resumable, distributed-aware.

One step: views of a batch -> :class:`~medssl.models.ssl_model.SSLModel` ->
:class:`~medssl.models.outputs.ViewOutputs` (all-gathered across ranks) ->
``objective(outputs, support_set) -> (loss, diagnostics)`` -> backward -> optimiser,
scheduler and EMA-target steps. Everything that influences the next step (weights,
target, support set, optimiser, scheduler, scaler, every RNG, the data position) is in the
checkpoint, so a resumed CPU run ends with bitwise the same weights as an uninterrupted
one.

Built by :mod:`medssl.train.builders`; the run directory, the checkpoint to resume from
and stop signals are :mod:`~medssl.train.run_dir`, :mod:`~medssl.train.resume` and
:mod:`~medssl.train.signals`.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from medssl.checkpoint_io import capture_rng_state, load_checkpoint, restore_rng_state
from medssl.config import to_dict
from medssl.device import cpu_has_native_bf16, resolve_device
from medssl.errors import ConfigError, MedSSLError
from medssl.models.export import export_encoder
from medssl.models.outputs import ViewOutputs
from medssl.precision import PrecisionChoice, choose_cpu_precision, forced_bf16
from medssl.progress import Progress
from medssl.provenance import run_provenance
from medssl.runlock import RunLock
from medssl.threads import ThreadPlan, apply_threads, plan_threads
from medssl.train import distributed as D
from medssl.train.builders import (build_data, build_model, build_optimisation, exclusion_groups, reshard_loader,
                                   warmup_notice)
from medssl.train.checkpoint_rotation import CheckpointManager
from medssl.train.config import PretrainConfig
from medssl.train.metrics_log import MetricsLogger, plot_metrics, read_jsonl, write_csv
from medssl.train.monitor import HealthMonitor
from medssl.train.resume import (SAFE_ON_RESUME, agree_on_resume, check_resume, continue_schedule, find_resume,
                                 per_rank_batch)
from medssl.train.run_dir import append_history, check_fresh_start, check_resume_target, open_run_dir
from medssl.train.preemption import REQUEUE_SIGNAL, requeue_slurm_job, stop_message
from medssl.train.signals import shutdown_workers, stop_signals, workers_start_protected
from medssl.train.tracking import RunTracker


@dataclass
class RunResult:
    """What a finished (or stopped) run left behind."""

    run_dir: Path
    steps: int
    last_loss: float
    checkpoint: Optional[Path]
    encoder: Optional[Path]
    steps_run: int = 0  # in this call: 0 when a resumed run was already complete
    stop_signal: Optional[int] = None  # the signal that stopped it before the last step


def snapshot_path(run_dir: Path, step: int) -> Path:
    """Where ``train.export_steps`` puts the encoder of ``step``: ``snapshots/step_XXXXXXXX/``."""
    return Path(run_dir) / "snapshots" / f"step_{step:08d}" / "encoder.safetensors"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_amp(name: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype, or None, for every case that needs no measurement.

    CUDA: ``auto`` prefers bf16, else fp16. CPU: an explicit ``bf16`` on a processor with
    native bf16 (:func:`~medssl.device.cpu_has_native_bf16`; float32 with a warning
    elsewhere); ``auto`` returns None here and is decided by
    :meth:`Pretrainer._choose_cpu_precision`, which times the model in both precisions
    (:mod:`medssl.precision`).
    """
    if name == "off":
        return None
    if device.type == "cpu":
        return forced_bf16("train.amp", "training in float32") if name == "bf16" else None
    if device.type != "cuda":
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if name == "bf16" else torch.float16


def probe_step(cfg: PretrainConfig, in_chans: int, channels_last: bool) -> Callable[[torch.nn.Module, bool], None]:
    """One training forward + backward of an :class:`SSLModel` at the run's shape (batch,
    views, channels, image size, layout) on inputs from a private generator: what
    :func:`~medssl.precision.choose_cpu_precision` times. The objective is left out: it runs
    in float32 in both precisions, so it costs both the same."""
    a, b = cfg.augment, cfg.train.batch_size
    gen = torch.Generator().manual_seed(0)
    views = [torch.rand(b, in_chans, a.image_size, a.image_size, generator=gen) for _ in range(a.num_views)]
    if channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]

    def step(model: torch.nn.Module, bf16: bool) -> None:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(views)
        loss = sum(z.sum() for z in out.z) + (sum(p.sum() for p in out.p) if out.p is not None else 0)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def compile_model(model: torch.nn.Module, setting: Any) -> Any:
    """``torch.compile(model)``: ``setting`` is ``True`` (the default backend, inductor) or a
    backend name (``"eager"``, ``"aot_eager"``, ...); an unknown one is a ConfigError."""
    import torch._dynamo

    backend = "inductor" if setting is True else str(setting)
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ConfigError(f"train.compile: unknown torch.compile backend {backend!r}; use true, false or one of "
                          f"{', '.join(sorted(known))}")
    return torch.compile(model, backend=backend)


class Pretrainer:
    """Builds every component from a :class:`PretrainConfig` and runs the loop.

    Args:
        cfg: the validated config.
        run_dir: where outputs go (default ``cfg.out_dir``).
        progress: show a progress bar (rank 0 only).
        resume_force: resume even when ``cfg`` differs from the checkpoint's config in keys
            that change what is trained (recorded in ``history.jsonl``; see
            :mod:`medssl.train.resume`).
        resume_asked: the user asked to resume (``--resume``): with no checkpoint to resume
            from, stop rather than start afresh (:func:`~medssl.train.run_dir.check_fresh_start`).
        overwrite: train over a finished run (or another run's checkpoints) in ``run_dir``.
    """

    def __init__(self, cfg: PretrainConfig, run_dir: Optional[Path] = None, progress: bool = True,
                 resume_force: bool = False, resume_asked: bool = False, overwrite: bool = False) -> None:
        self.cfg = cfg
        self.progress = progress
        self.resume_force = resume_force
        self.resume_asked, self.overwrite = resume_asked, overwrite
        t = cfg.train
        probe = torch.device("cuda") if (t.device != "cpu" and torch.cuda.is_available()) else torch.device("cpu")
        self.dist = D.init_distributed(probe.type)
        self.device = resolve_device(t.device, "train.device", self.dist.local_rank)
        self.run_dir = Path(run_dir or cfg.out_dir)
        # On a CPU the intra-op threads follow train.threads (medssl/threads.py), set before
        # anything runs; pretrain() puts the previous count back at the end.
        self.thread_plan: Optional[ThreadPlan] = None
        self.threads_before = torch.get_num_threads()
        if self.device.type == "cpu":
            self.thread_plan = plan_threads(t.threads, "train.threads")
            apply_threads(self.thread_plan)
            if self.dist.is_main:
                print(f"medssl: {self.thread_plan.describe()}", file=sys.stderr)
        self.amp_dtype = resolve_amp(t.amp, self.device)
        # a CPU's ``auto`` is measured once the model exists (or taken from a resumed run)
        self.precision_pending = t.amp == "auto" and self.device.type == "cpu"
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.device.type == "cuda")
        seed_everything(cfg.seed + self.dist.rank)
        data = build_data(cfg, self.device, self.dist)
        self.dataset, self.sampler, self.loader = data.dataset, data.sampler, data.loader
        self.train_source = data.source
        self.batch_views, self.on_device_aug = data.batch_views, data.batch_views is not None
        self.in_chans, self.knn, self.augment_params = data.in_chans, data.knn, data.augment_params
        self.steps_per_epoch, self.total_steps = data.steps_per_epoch, data.total_steps
        built = build_model(cfg, self.in_chans, len(self.dataset), self.device, self.dist,
                            groups=exclusion_groups(cfg, self.dataset))
        self.model, self.ddp_model, self.objective = built.model, built.ddp_model, built.objective
        self.support = built.support
        self.gather, self.channels_last, self.objective_gen = built.gather, built.channels_last, built.objective_gen
        self.optimizer, self.scheduler, self.scaler = build_optimisation(cfg, self.model, self.objective,
                                                                         self.total_steps, self.amp_dtype)
        notice = warmup_notice(cfg, self.total_steps)
        if notice and self.dist.is_main:
            print(f"medssl: {notice}", file=sys.stderr)
        # torch.compile traces on the first call: that step's time is reported as the cost
        self.compile_pending = bool(t.compile)
        if t.compile:
            self.ddp_model = compile_model(self.ddp_model, t.compile)
        self.ckpts = CheckpointManager(self.run_dir, keep_last=t.keep_last)
        self.health = HealthMonitor(t.collapse_std, t.collapse_patience)
        self.step = 0
        self.last_checkpoint: Optional[Path] = None
        self._saved_step: Optional[int] = None  # the step self.last_checkpoint holds
        self.tracker: Optional[RunTracker] = None  # rank 0, tracking.mlflow_uri set
        self._stop_signal: Optional[int] = None
        self._pending_signal: Optional[int] = None  # received, not yet agreed by all ranks

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
            "precision": "bf16" if self.amp_dtype == torch.bfloat16 else
                         "fp16" if self.amp_dtype == torch.float16 else "float32",
            "provenance": self._provenance,
            # how the global batch was split: a resume on another number of processes keeps it
            "layout": {"world_size": self.dist.world_size, "batch_size": self.sampler.batch_size},
        }

    def load_state_dict(self, state: Dict[str, Any], source: Path, fresh_optimizer: bool = False) -> None:
        """Restore everything from a checkpoint; ``fresh_optimizer`` keeps this config's
        optimiser (a forced ``optim.*`` change) and only moves its schedule to the step."""
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
        if fresh_optimizer:
            continue_schedule(self.optimizer, self.scheduler, int(state["scheduler"]["last_epoch"]))
        else:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.objective_gen.set_state(state["objective_rng"])
        self.health.load_state_dict(state.get("health", {}))
        self.step = int(state["step"])

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
        start = time.perf_counter()
        loss_value, diag = self._step(batch)
        if self.compile_pending:
            self.compile_pending = False
            seconds = time.perf_counter() - start
            diag["compile_s"] = seconds
            if self.dist.is_main:
                print(f"medssl: torch.compile: the first step (tracing and compiling) took {seconds:.1f} s",
                      file=sys.stderr)
        return loss_value, diag

    def _step(self, batch: Any) -> Tuple[float, Dict[str, float]]:
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
        self._saved_step = self.step
        D.barrier()
        return self.last_checkpoint

    def _choose_cpu_precision(self, recorded: Optional[str]) -> Optional[torch.dtype]:
        """``train.amp: auto`` on a CPU: a resumed run keeps the precision it was trained in
        (where this CPU has native bf16); a new one times both (:mod:`medssl.precision`).
        Every rank uses rank 0's answer."""
        if recorded in ("bf16", "float32") and (recorded == "float32" or cpu_has_native_bf16()):
            choice = PrecisionChoice(torch.bfloat16 if recorded == "bf16" else None, source="resumed")
        else:
            a = self.cfg.augment
            shape = {"batch": self.cfg.train.batch_size, "views": a.num_views, "channels": self.in_chans,
                     "size": a.image_size, "channels_last": bool(self.channels_last), "step": "train"}
            choice = choose_cpu_precision(self.model, probe_step(self.cfg, self.in_chans, bool(self.channels_last)),
                                          shape)
        if self.dist.enabled:
            choice = D.broadcast_object(choice)
        if self.dist.is_main:
            print(f"medssl: {choice.describe()}", file=sys.stderr)
        self.precision_pending = False
        return choice.dtype

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT/SIGUSR1: finish the current step, save a checkpoint and stop."""
        if self.dist.enabled:  # acted on only once all ranks agree (see fit)
            self._pending_signal = signum
        else:
            self._stop_signal = signum

    def fit(self) -> RunResult:
        """Run (or resume) training to ``total_steps``, or until a stop signal (then with
        one checkpoint of the step all ranks stopped at); returns what it wrote."""
        with stop_signals(self._on_signal):  # from the first line: start-up, resume, export
            try:
                result = self._fit()
            except BaseException:
                if self.tracker is not None:
                    self.tracker.finish(self.run_dir, "FAILED")
                raise
        if self.tracker is not None:  # a stopped run is KILLED; its resume continues the same MLflow run
            self.tracker.finish(self.run_dir, "FINISHED" if result.stop_signal is None else "KILLED")
        stopped = result.stop_signal
        if stopped is not None and self.dist.is_main:
            print(stop_message(stopped, self.step, self.last_checkpoint, self.run_dir, self.dist.world_size),
                  file=sys.stderr)
            requeued = requeue_slurm_job() if stopped == REQUEUE_SIGNAL else None
            if requeued:
                print(f"medssl: {requeued}", file=sys.stderr)
        return result

    def _reshard(self, layout: Optional[Dict[str, Any]], checkpoint: Path) -> None:
        """Resuming on another number of processes: keep the checkpoint's global batch
        (docs/distributed.md, "another world size"). Weights, optimiser, support set and
        generators are identical on every rank, so they load as they are."""
        per_rank = per_rank_batch(layout, self.dist.world_size, self.sampler.batch_size, checkpoint=checkpoint)
        if layout is None or per_rank == self.sampler.batch_size:
            return
        self.sampler, self.loader = reshard_loader(self.loader, self.sampler, per_rank, self.dist)
        if self.dist.is_main:
            print(f"medssl: resuming a {layout['world_size']}-process run on {self.dist.world_size}: "
                  f"{per_rank} images per process (global batch {per_rank * self.dist.world_size}, as trained; "
                  "learning rate unchanged)", file=sys.stderr)

    def _fit(self) -> RunResult:
        cfg, t = self.cfg, self.cfg.train
        main = self.dist.is_main
        cfg_dict = to_dict(cfg)
        self._provenance = run_provenance(cfg_dict, [cfg.data, cfg.val_data]) if main else {}
        resume = agree_on_resume(find_resume(t.resume, self.ckpts), self.dist)
        changes: Dict[str, Any] = {}
        if resume is not None:
            if main:
                check_resume_target(self.run_dir, self.ckpts, Path(resume), self.overwrite)
            state = load_checkpoint(resume, map_location=self.device)
            # Refused here, before anything is loaded or written, unless forced.
            changes = check_resume((state.get("provenance") or {}).get("config"), cfg_dict, checkpoint=resume,
                                   run_dir=self.run_dir, force=self.resume_force)
            fresh_optimizer = any(k.startswith("optim.") for k in changes)
            self._reshard(state.get("layout"), resume)
            self.load_state_dict(state, resume, fresh_optimizer=fresh_optimizer)
            recorded = state.get("precision")
            del state
            self.last_checkpoint, self._saved_step = resume, self.step
            if main:
                print(f"medssl: resumed from {resume} at step {self.step}", file=sys.stderr)
                if fresh_optimizer:
                    print(f"medssl: optim changed under --resume-force: the optimiser state starts afresh at "
                          f"step {self.step} (the learning-rate schedule continues)", file=sys.stderr)
        else:
            recorded = None
        if main and resume is None:
            check_fresh_start(self.run_dir, self.ckpts, self.resume_asked, self.overwrite)
        if self.precision_pending:
            self.amp_dtype = self._choose_cpu_precision(recorded)
        if main:
            logger = open_run_dir(self.run_dir, cfg_dict, self.step)
            self.tracker = RunTracker.start(cfg, cfg_dict, self._provenance, self.run_dir)
            if self.tracker is not None:
                logger.mirrors.append(self.tracker)
            append_history(self.run_dir, "resume" if resume is not None else "start", self.step, changes,
                           checkpoint=resume, forced=any(k not in SAFE_ON_RESUME for k in changes))
        else:
            logger = MetricsLogger(self.run_dir, enabled=False)
        start = self.step
        last_loss = self._run(logger)
        finished = self.step >= self.total_steps  # a signal during the export changes nothing
        encoder = self._finish(main) if finished else None
        return RunResult(self.run_dir, self.step, last_loss, self.last_checkpoint, encoder, self.step - start,
                         stop_signal=None if finished else self._stop_signal)

    def _run(self, logger: MetricsLogger) -> float:
        """Train from ``self.step`` to ``total_steps`` (or a stop signal); the last loss."""
        t, main = self.cfg.train, self.dist.is_main
        bar = Progress(self.total_steps, "pretrain", enabled=main and self.progress, unit="step", initial=self.step)
        last_loss = math.nan
        t0, seen = time.perf_counter(), 0
        try:
            while self.step < self.total_steps and self._stop_signal is None:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                self.sampler.set_position(epoch, offset)
                if hasattr(self.train_source, "set_epoch"):
                    self.train_source.set_epoch(epoch)
                with workers_start_protected():  # forked workers inherit the blocked mask
                    batches = iter(self.loader)
                for batch in batches:
                    last_loss, diag = self.train_step(batch)
                    if self.dist.enabled:  # a signal may reach the ranks at different steps
                        self._stop_signal = D.agree_on_stop(self._stop_signal or self._pending_signal,
                                                            self.device)
                    seen += self.sampler.batch_size * self.dist.world_size
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
                    if self.step in t.export_steps and self.step < self.total_steps and main:
                        # before this step's checkpoint: a run resumed from it has the snapshot
                        self.export(snapshot_path(self.run_dir, self.step))
                    if self.step % t.ckpt_every == 0 and self.step < self.total_steps:
                        self._save()
                    if self.step >= self.total_steps or self._stop_signal is not None:
                        break
            if self.step > 0 and self._saved_step != self.step:  # one checkpoint per step, none if nothing ran
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
            shutdown_workers(self.loader)  # ours to end: they ignore the scheduler's signals
            bar.close()
            logger.close()
        return last_loss

    def _finish(self, main: bool) -> Optional[Path]:
        if not main:
            return None
        rows = read_jsonl(self.run_dir / "metrics.jsonl")
        if rows:
            write_csv(rows, self.run_dir / "metrics.csv")
            name = self.cfg.objective["name"]
            plot_metrics(rows, self.run_dir / "loss.png", ["loss", "lr"], title=f"{name}: loss and learning rate")
            plot_metrics(rows, self.run_dir / "monitor.png",
                         ["emb_std", "nn_purity", "nn_same_image", "weight_entropy", "knn_top1", "knn_auc"],
                         title=f"{name}: representation health during pretraining")
        return self.export(self.run_dir / "encoder.safetensors")

    def export(self, path: Path) -> Path:
        """The encoder as it is now, exported to ``path`` (safetensors and its .json)."""
        a = self.cfg.augment
        mean, std = self.augment_params.plan().normalisation(self.in_chans)
        return export_encoder(
            self.model.encoder,
            path,
            backbone=self.cfg.model.backbone,
            in_chans=self.in_chans,
            image_size=a.image_size,
            small_input_stem=self.cfg.model.small_input_stem,
            mean=list(mean),
            std=list(std),
            extra={"objective": self.cfg.objective.get("name"), "steps": self.step},
            advice=f"the training finished and its checkpoint {self.last_checkpoint} is intact: free some space, "
                   "then run the same command with --resume to export the encoder again",
        )


def pretrain(cfg: PretrainConfig, run_dir: Optional[Path] = None, progress: bool = True,
             resume_force: bool = False, resume_asked: bool = False, overwrite: bool = False) -> RunResult:
    """Build a :class:`Pretrainer` from ``cfg`` and run it; the process group is left as found.

    The run directory is locked while the run writes to it (rank 0 holds
    :class:`~medssl.runlock.RunLock`): a second run on the same ``out_dir`` is refused,
    naming the PID of the first. Building comes first, so a config that cannot run
    (unknown data, a backbone that cannot take the image size) writes nothing. A finished
    run in ``run_dir`` is replaced only with ``overwrite``; ``resume_asked`` (``--resume``)
    with no checkpoint to resume from stops (see :class:`Pretrainer`).
    """
    trainer: Optional[Pretrainer] = None
    early: List[int] = []

    def on_signal(signum: int, frame: Any) -> None:  # held while it builds, then the trainer's
        if trainer is None:
            early.append(signum)
        else:
            trainer._on_signal(signum, frame)

    with stop_signals(on_signal):
        trainer = Pretrainer(cfg, run_dir=run_dir, progress=progress, resume_force=resume_force,
                             resume_asked=resume_asked, overwrite=overwrite)
        for signum in early:
            trainer._on_signal(signum, None)
        try:
            with RunLock(trainer.run_dir, "out_dir") if trainer.dist.is_main else contextlib.nullcontext():
                return trainer.fit()
        finally:
            if torch.get_num_threads() != trainer.threads_before:
                torch.set_num_threads(trainer.threads_before)
            if os.environ.get("WORLD_SIZE", "1") != "1":
                D.cleanup()
