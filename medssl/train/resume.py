"""Which checkpoint a pretraining run resumes from (``train.resume`` / ``--resume``), and
whether the config may resume it.

A checkpoint carries the config that trained it (``provenance.config``). Resuming with a
config that trains something else -- another dataset, objective, objective parameter,
backbone, optimiser or seed -- would continue the old weights under a new recipe and
rewrite ``config.yaml`` as if the run had always been that recipe. So on resume the two
configs are compared key by key: only :data:`SAFE_ON_RESUME` keys (how long, how often to
log, evaluate and checkpoint, where and how fast it runs) may differ; anything else is
refused with the list of differences unless the user forces it (``--resume-force``), and
the run directory's ``history.jsonl`` records every change
(:func:`medssl.train.run_dir.append_history`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from medssl.errors import ConfigError, MedSSLError
from medssl.train import distributed as D
from medssl.train.checkpoint_rotation import CheckpointManager
from medssl.text import looked_at


def find_resume(resume: Union[bool, str], ckpts: CheckpointManager) -> Optional[Path]:
    """The checkpoint to resume from: none (``False``), the newest in the run directory
    (``True``: one must exist; ``"auto"``: if any) or the file ``resume`` names."""
    if resume is False:
        return None
    if resume is True or resume == "auto":
        found = ckpts.latest()
        if found is None and resume is True:
            raise MedSSLError(f"train.resume is true but {ckpts.dir} holds no checkpoint")
        return found
    path = Path(str(resume))
    if not path.is_file():
        raise MedSSLError(f"train.resume points at {path}, which does not exist (looked at {looked_at(path)})")
    return path


def agree_on_resume(resume: Optional[Path], dist: D.DistInfo) -> Optional[Path]:
    """Rank 0's choice on every rank, so no rank resumes while another starts afresh (e.g.
    a node that cannot see the checkpoint directory); a rank that cannot read it fails."""
    if not dist.enabled:
        return resume
    chosen = D.broadcast_object(resume if dist.is_main else None)
    if chosen is not None and not Path(chosen).is_file():  # type: ignore[arg-type]
        raise D.DistributedError(
            f"rank {dist.rank} cannot read the checkpoint {chosen} that rank 0 resumes from; "
            "out_dir must be on a filesystem every node can read"
        )
    return chosen  # type: ignore[return-value]


#: Dotted keys that may change between a run and its resumption: the budget, logging,
#: monitoring and checkpoint cadence, and the machine (workers, device). None of them
#: changes what a training step computes.
SAFE_ON_RESUME = frozenset({
    "train.epochs", "train.max_steps",                              # budget
    "train.log_every", "train.knn_every", "train.knn_k", "val_data",  # logging and monitoring
    "train.ckpt_every", "train.keep_last", "train.export_steps",    # checkpoint / export cadence
    "train.num_workers", "train.device", "train.threads", "train.compile", "train.amp",  # machine, speed
    "train.resume", "out_dir",                                      # how the resume itself was asked for
    "tracking.mlflow_uri", "tracking.experiment", "tracking.run_name",  # where it is reported
})

_UNSET = "(not set)"

#: Keys added after checkpoints were first written, with the value that reproduces what a run
#: from before the key trained: a checkpoint's config without the key is compared as if it
#: held that value (so such a run resumes with it, and is refused with a clear diff without).
ADDED_KEYS: Dict[str, Any] = {
    "support_set.exclude_same_image": False,  # issue 27: look-ups excluded nothing before
    "support_set.exclude_same_slide": False,
    "support_set.size_fraction": None,
    "train.export_steps": [],
}

Change = Tuple[Any, Any]


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; lists and scalars are leaves. A
    mapping listed whole in :data:`SAFE_ON_RESUME` (``val_data``) stays one leaf."""
    out: Dict[str, Any] = {}
    for key, value in cfg.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value and dotted not in SAFE_ON_RESUME:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = list(value) if isinstance(value, tuple) else value
    return out


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Dict[str, Change]:
    """Every dotted key whose value differs, as ``{key: (old, new)}`` (``"(not set)"`` for
    a key only one side has), sorted by key."""
    a, b = flatten(old), flatten(new)
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k, _UNSET), b.get(k, _UNSET)) for k in keys if a.get(k, _UNSET) != b.get(k, _UNSET)}


def _show(changes: Mapping[str, Change], limit: int = 8) -> str:
    items = [f"{k}: {o!r} -> {n!r}" for k, (o, n) in changes.items()]
    return "; ".join(items[:limit]) + (f"; ... (+{len(items) - limit} more)" if len(items) > limit else "")


def _uses_support_set(objective: Any) -> bool:
    from medssl.registry import OBJECTIVES

    if not isinstance(objective, str) or objective not in OBJECTIVES:
        return True
    return bool(getattr(getattr(OBJECTIVES.get(objective), "requirements", None), "support_set", True))


def check_resume(old: Optional[Mapping[str, Any]], new: Mapping[str, Any], *, checkpoint: Path,
                 run_dir: Path, force: bool = False) -> Dict[str, Change]:
    """All changes from the checkpoint's config ``old`` to ``new``.

    Raises:
        ConfigError: a key outside :data:`SAFE_ON_RESUME` changed and ``force`` is false;
            the one-line message lists the differences and the ways forward.
    """
    if old is None:  # a checkpoint from before configs were recorded: nothing to compare
        return {}
    flat_old, flat_new = flatten(old), flatten(new)
    added = {k: v for k, v in ADDED_KEYS.items() if k not in flat_old}
    if not _uses_support_set(flat_new.get("objective.name")):  # its keys train nothing here
        added.update({k: flat_new.get(k) for k in added if k.startswith("support_set.")})
    changes = config_changes({**flat_old, **added}, flat_new)
    unsafe = {k: v for k, v in changes.items() if k not in SAFE_ON_RESUME}
    if unsafe and not force:
        newer = [f"{k}: {added[k]!r}" for k in unsafe if k in added]
        hint = (f" The run predates key(s) whose defaults changed what is trained; to resume it as it trained, "
                f"set {', '.join(newer)}." if newer else "")
        raise ConfigError(
            f"cannot resume {checkpoint}: this config differs from the one the run was trained with in "
            f"{len(unsafe)} key(s) that change what is trained ({_show(unsafe)}).{hint} Resume with the run's own "
            f"config ({run_dir / 'config.yaml'}), start a new out_dir, or pass --resume-force to continue "
            f"with the new values (recorded in {run_dir / 'history.jsonl'})"
        )
    return changes


def continue_schedule(optimizer: torch.optim.Optimizer, scheduler: Any, step: int) -> None:
    """Put a fresh ``optimizer`` at ``step`` of its own learning-rate ``scheduler`` (a
    ``LambdaLR``): what a forced ``optim.*`` change resumes with, so the new values are the
    ones used while the schedule continues where the checkpoint left it."""
    scheduler.last_epoch = step
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(step)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def per_rank_batch(layout: Optional[Mapping[str, Any]], world_size: int, per_rank: int, *,
                   checkpoint: Path) -> int:
    """The per-process batch that continues a checkpoint's run on ``world_size`` processes.

    ``layout`` is the checkpoint's ``{"world_size": N, "batch_size": b}`` (None for a
    checkpoint from before it was recorded: taken as this launch's). The global batch
    ``N * b`` is what was trained with, and it is kept: the same images make each step,
    so the epoch length, the sampler position and the learning-rate schedule carry over
    unchanged (the learning rate is not rescaled).

    Raises:
        ConfigError: ``N * b`` does not split into ``world_size`` equal shares.
    """
    if not layout or int(layout["world_size"]) == world_size:
        return per_rank
    global_batch = int(layout["world_size"]) * int(layout["batch_size"])
    if global_batch % world_size:
        raise ConfigError(
            f"cannot resume {checkpoint} on {world_size} processes: it was trained on {layout['world_size']} with a "
            f"global batch of {global_batch} images, which does not split into {world_size} equal shares. Resume on a "
            f"number of processes that divides {global_batch}"
        )
    return global_batch // world_size
