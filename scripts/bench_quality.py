"""Representation quality at equal budget: every objective, same backbone, steps and seeds.

For each dataset (default BloodMNIST from ``../shared/data/medmnist``; the embedded sample's
``ihcstain`` MedMNIST file when that is absent) and each seed, this script

1. pretrains SimCLR, NNCLR, pNNCLR, SNCLR and PSM with :func:`medssl.train.loop.pretrain`
   (same backbone, heads, augmentation, optimiser and number of steps),
2. trains lightly's NNCLR with the same budget when ``lightly`` is importable (skipped and
   reported otherwise),
3. exports a randomly initialised encoder (no pretraining) and trains a supervised upper
   bound (backbone + linear head, cross-entropy on the full labelled train split, one view
   of the same augmentation, same steps, batch and optimiser),
4. evaluates every encoder on frozen features with ``medssl.eval``: linear probe on 100 %,
   10 % and 2 % of the train labels (stratified, drawn per seed) and weighted kNN (k = 20),
   test AUC and top-1 with 95 % bootstrap CIs on the first seed and mean +- sd over seeds,
5. reads ``nn_purity`` from the NNCLR / pNNCLR runs' ``metrics.jsonl`` and plots it.

Outputs (``--out``, default ``docs/figures``): ``quality_results.json`` (every config that
ran, every metric, timings), ``quality_table.md`` and ``purity.png``.

    python scripts/bench_quality.py --scale cpu        # 27 min on the shared 2-core CPU (2026-11-25)
    python scripts/bench_quality.py --scale smoke      # embedded sample, seconds
    python scripts/bench_quality.py --scale gpu        # ResNet-18, full epochs, needs CUDA
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

SSL_METHODS = ("simclr", "nnclr", "pnnclr", "snclr", "psm")
METHOD_LABELS = {"simclr": "SimCLR", "nnclr": "NNCLR", "pnnclr": "pNNCLR", "snclr": "SNCLR", "psm": "PSM",
                 "lightly_nnclr": "NNCLR (lightly)", "random": "random init", "supervised": "supervised (CE)"}
PROTOCOLS = ("linear@100%", "linear@10%", "linear@2%", "knn@k20")
FRACTIONS = {"linear@100%": 1.0, "linear@10%": 0.10, "linear@2%": 0.02}
GRAY_FLAGS = ("breastmnist", "pneumoniamnist")


@dataclass
class Scale:
    """One budget: backbone, input size, batch, steps per objective, seeds and heads."""

    backbone: str
    small_input_stem: bool
    image_size: int
    batch_size: int
    steps: Optional[int]  # None: ``epochs`` x steps per epoch
    epochs: int
    seeds: Tuple[int, ...]
    support_size: int
    proj_hidden: int
    proj_dim: int
    pred_hidden: int
    lr: float
    warmup_steps: int
    log_every: int
    n_boot: int
    threads: int
    num_workers: int
    objective_overrides: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    device: str = "cpu"
    probe_weight_decay: Any = "auto"  # medssl.eval.linear: 'auto' = held-out grid search
    probe_max_iter: int = 100


SCALES: Dict[str, Scale] = {
    # Measured 2026-11-25 on the shared 2-core machine: one pNNCLR step (two 28 px views of
    # 128 images, ResNet-18, EMA target) ~1.8 s with 1 torch thread under load ~5, and ~5 s
    # with 2 threads (contention); 21 training runs x 40 steps plus evaluation ~35 min.
    "cpu": Scale(backbone="resnet18", small_input_stem=False, image_size=28, batch_size=128, steps=40, epochs=1,
                 seeds=(0, 1, 2), support_size=2048, proj_hidden=512, proj_dim=128, pred_hidden=512, lr=1e-3,
                 warmup_steps=4, log_every=4, n_boot=1000, threads=1, num_workers=0,
                 objective_overrides={"snclr": {"k": 30}, "psm": {"n_neg": 1024}}),
    "gpu": Scale(backbone="resnet18", small_input_stem=True, image_size=28, batch_size=256, steps=None, epochs=100,
                 seeds=(0, 1, 2), support_size=11959, proj_hidden=2048, proj_dim=256, pred_hidden=4096, lr=1e-3,
                 warmup_steps=200, log_every=20, n_boot=1000, threads=8, num_workers=4, device="cuda"),
    # Seconds, not quality: timm's tiny test_resnet, one seed, a fixed probe weight decay.
    "smoke": Scale(backbone="test_resnet", small_input_stem=False, image_size=28, batch_size=32, steps=2, epochs=1,
                   seeds=(0,), support_size=128, proj_hidden=64, proj_dim=32, pred_hidden=64, lr=1e-3,
                   warmup_steps=0, log_every=1, n_boot=50, threads=1, num_workers=0,
                   probe_weight_decay=1e-3, probe_max_iter=30,
                   objective_overrides={"snclr": {"k": 10}, "psm": {"n_neg": 64, "band_drop": 8}}),
}


@dataclass
class DataSpec:
    """A labelled MedMNIST-layout file: the train split pretrains, train/test evaluate."""

    name: str
    path: str
    preset: str
    source: str

    def split(self, split: str) -> Dict[str, Any]:
        return {"name": "medmnist", "path": self.path, "split": split}


# ---------------------------------------------------------------------------- data
def resolve_datasets(flags: Sequence[str], shared: Path, scale: str, workdir: Path) -> List[DataSpec]:
    """Real MedMNIST files under ``shared`` when present (and not ``--scale smoke``), else
    the embedded sample written with :func:`medssl.data.sample.write_sample`."""
    specs = []
    for flag in flags:
        f = shared / f"{flag}.npz"
        if scale != "smoke" and f.is_file():
            specs.append(DataSpec(flag, str(f), "gray" if flag in GRAY_FLAGS else "natural", f"real file {f}"))
    if specs:
        return specs
    from medssl.data.sample import write_sample

    sample = workdir / "sample_data"
    if not (sample / "medmnist" / "ihcstain.npz").is_file():
        write_sample(sample, seed=0)
    why = "--scale smoke" if scale == "smoke" else f"no {', '.join(flags)} under {shared}"
    return [DataSpec("ihcstain (embedded sample)", str(sample / "medmnist" / "ihcstain.npz"), "natural",
                     f"embedded sample (`medssl data sample`), because {why}")]


def augment_params(preset: str) -> Dict[str, Any]:
    # 28 px cells/tiles: crops below 30 % of the area lose the object (bloodmnist.yaml).
    return {"scale": [0.3, 1.0]}


# ---------------------------------------------------------------------------- configs
def steps_for(scale: Scale, n_train: int) -> int:
    return scale.steps if scale.steps is not None else scale.epochs * (n_train // scale.batch_size)


def ssl_config(method: str, data: DataSpec, scale: Scale, seed: int, steps: int, run_dir: Path) -> Dict[str, Any]:
    """The full ``medssl pretrain`` mapping for one (method, dataset, seed)."""
    return {
        "seed": seed,
        "out_dir": str(run_dir),
        "data": data.split("train"),
        "val_data": data.split("val"),
        # 'batch': the same batched pipeline (and per-step seeding) as the supervised run
        "augment": {"preset": data.preset, "image_size": scale.image_size,
                    "device": "batch" if scale.device == "cpu" else "auto",
                    "params": augment_params(data.preset)},
        "model": {"backbone": scale.backbone, "small_input_stem": scale.small_input_stem,
                  "proj_hidden": scale.proj_hidden, "proj_dim": scale.proj_dim, "pred_hidden": scale.pred_hidden},
        "objective": {"name": method, **scale.objective_overrides.get(method, {})},
        "support_set": {"size": scale.support_size},
        "optim": {"name": "adam", "lr": scale.lr, "warmup_steps": scale.warmup_steps},
        "train": {"max_steps": steps, "batch_size": scale.batch_size, "num_workers": scale.num_workers,
                  "device": scale.device, "log_every": scale.log_every, "ckpt_every": max(steps, 1),
                  "keep_last": 1, "knn_every": 0},
    }


def run_ssl(cfg_map: Dict[str, Any]) -> Dict[str, Any]:
    from medssl.train.config import load_pretrain_config
    from medssl.train.loop import pretrain

    cfg = load_pretrain_config(data=cfg_map)
    t0 = time.perf_counter()
    res = pretrain(cfg, run_dir=Path(cfg_map["out_dir"]), progress=False)
    return {"wall_s": time.perf_counter() - t0, "steps": res.steps, "last_loss": res.last_loss}


def _normalisation(preset: str, image_size: int, in_chans: int) -> Tuple[List[float], List[float]]:
    from medssl.augment.presets import resolve_params

    mean, std = resolve_params({"name": preset, **augment_params(preset)}).plan().normalisation(in_chans)
    return list(mean), list(std)


def _in_chans(data: DataSpec, image_size: int) -> int:
    """Channels the training views have (as the pretraining loop measures them)."""
    from medssl.augment.gpu import build_batch_augmentation
    from medssl.data.medmnist import MedMNISTDataset

    ds = MedMNISTDataset(**{k: v for k, v in data.split("train").items() if k != "name"})
    img = torch.from_numpy(np.ascontiguousarray(ds[0][0])).permute(2, 0, 1)[None]
    aug = build_batch_augmentation({"name": data.preset, **augment_params(data.preset)}, image_size)
    return int(aug(img, generator=torch.Generator().manual_seed(0)).shape[1])


def export_random(data: DataSpec, scale: Scale, seed: int, run_dir: Path) -> Dict[str, Any]:
    """A randomly initialised encoder (seeded), exported like a pretrained one."""
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    in_chans = _in_chans(data, scale.image_size)
    torch.manual_seed(seed)
    enc = build_backbone(scale.backbone, in_chans=in_chans, image_size=scale.image_size,
                         small_input_stem=scale.small_input_stem)
    mean, std = _normalisation(data.preset, scale.image_size, in_chans)
    export_encoder(enc, run_dir / "encoder.safetensors", backbone=scale.backbone, in_chans=in_chans,
                   image_size=scale.image_size, small_input_stem=scale.small_input_stem, mean=mean, std=std,
                   extra={"objective": "random", "steps": 0, "seed": seed})
    return {"wall_s": 0.0, "steps": 0}


def train_supervised(data: DataSpec, scale: Scale, seed: int, steps: int, run_dir: Path) -> Dict[str, Any]:
    """Backbone + linear head, softmax cross-entropy on the full labelled train split, one
    view of the same (batched) augmentation, Adam with the same lr / warm-up / cosine."""
    from medssl.augment.gpu import build_batch_augmentation
    from medssl.data.medmnist import MedMNISTDataset
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder
    from medssl.train.optim import build_optimizer, build_scheduler

    device = torch.device(scale.device if scale.device != "cuda" or torch.cuda.is_available() else "cpu")
    ds = MedMNISTDataset(**{k: v for k, v in data.split("train").items() if k != "name"})
    images = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.asarray(ds.labels()).reshape(len(ds), -1)[:, 0].astype(np.int64))
    num_classes = int(ds.num_classes)
    aug = build_batch_augmentation({"name": data.preset, **augment_params(data.preset)}, scale.image_size)
    in_chans = _in_chans(data, scale.image_size)
    torch.manual_seed(seed)
    enc = build_backbone(scale.backbone, in_chans=in_chans, image_size=scale.image_size,
                         small_input_stem=scale.small_input_stem)
    head = torch.nn.Linear(enc.num_features, num_classes)
    model = torch.nn.Sequential(enc, head).to(device)
    opt = build_optimizer("adam", [model], lr=scale.lr, weight_decay=1e-6, momentum=0.9, betas=(0.9, 0.999))
    sched = build_scheduler(opt, steps, scale.warmup_steps, 0.0)
    order_gen = torch.Generator().manual_seed(seed)
    perm, pos = torch.randperm(len(ds), generator=order_gen), 0
    t0, losses = time.perf_counter(), []
    run_dir.mkdir(parents=True, exist_ok=True)
    model.train()
    for step in range(steps):
        if pos + scale.batch_size > len(ds):
            perm, pos = torch.randperm(len(ds), generator=order_gen), 0
        idx = perm[pos:pos + scale.batch_size]
        pos += scale.batch_size
        # same per-step seeding rule as the pretraining loop's batched views
        gen = torch.Generator().manual_seed((seed * 1_000_003 + step * 97) % 2**63)
        x = aug(images[idx].to(device), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    mean, std = _normalisation(data.preset, scale.image_size, in_chans)
    export_encoder(enc, run_dir / "encoder.safetensors", backbone=scale.backbone, in_chans=in_chans,
                   image_size=scale.image_size, small_input_stem=scale.small_input_stem, mean=mean, std=std,
                   extra={"objective": "supervised", "steps": steps, "seed": seed})
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for i, v in enumerate(losses):
            fh.write(json.dumps({"step": i + 1, "loss": v}) + "\n")
    return {"wall_s": time.perf_counter() - t0, "steps": steps, "last_loss": losses[-1] if losses else math.nan}


def lightly_available() -> bool:
    try:
        import lightly  # noqa: F401
    except ImportError:
        return False
    return True


def train_lightly_nnclr(data: DataSpec, scale: Scale, seed: int, steps: int, run_dir: Path) -> Dict[str, Any]:
    """lightly's NNCLR (its NNMemoryBankModule + NTXentLoss) on our backbone, heads,
    augmentation, optimiser and steps: the peer implementation under the same budget."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import NNMemoryBankModule

    from medssl.augment.gpu import build_batch_augmentation
    from medssl.data.medmnist import MedMNISTDataset
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder
    from medssl.models.heads import PredictionHead, ProjectionHead
    from medssl.train.optim import build_optimizer, build_scheduler

    device = torch.device(scale.device if scale.device != "cuda" or torch.cuda.is_available() else "cpu")
    ds = MedMNISTDataset(**{k: v for k, v in data.split("train").items() if k != "name"})
    images = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))])).permute(0, 3, 1, 2).contiguous()
    aug = build_batch_augmentation({"name": data.preset, **augment_params(data.preset)}, scale.image_size)
    in_chans = _in_chans(data, scale.image_size)
    torch.manual_seed(seed)
    enc = build_backbone(scale.backbone, in_chans=in_chans, image_size=scale.image_size,
                         small_input_stem=scale.small_input_stem)
    proj = ProjectionHead(enc.num_features, scale.proj_hidden, scale.proj_dim)
    pred = PredictionHead(scale.proj_dim, scale.pred_hidden)
    model = torch.nn.ModuleDict({"enc": enc, "proj": proj, "pred": pred}).to(device)
    bank = NNMemoryBankModule(size=(scale.support_size, scale.proj_dim)).to(device)
    crit = NTXentLoss(temperature=0.1)
    opt = build_optimizer("adam", [model], lr=scale.lr, weight_decay=1e-6, momentum=0.9, betas=(0.9, 0.999))
    sched = build_scheduler(opt, steps, scale.warmup_steps, 0.0)
    order_gen = torch.Generator().manual_seed(seed)
    perm, pos, t0 = torch.randperm(len(ds), generator=order_gen), 0, time.perf_counter()
    for step in range(steps):
        if pos + scale.batch_size > len(ds):
            perm, pos = torch.randperm(len(ds), generator=order_gen), 0
        idx = perm[pos:pos + scale.batch_size]
        pos += scale.batch_size
        gen = torch.Generator().manual_seed((seed * 1_000_003 + step * 97) % 2**63)
        x = images[idx].to(device)
        x0, x1 = aug(x, generator=gen), aug(x, generator=gen)
        z0, z1 = model["proj"](enc(x0)), model["proj"](enc(x1))
        p0, p1 = model["pred"](z0), model["pred"](z1)
        n0 = bank(z0.detach(), update=False)
        n1 = bank(z1.detach(), update=True)
        loss = 0.5 * (crit(n0, p1) + crit(n1, p0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    mean, std = _normalisation(data.preset, scale.image_size, in_chans)
    export_encoder(enc, run_dir / "encoder.safetensors", backbone=scale.backbone, in_chans=in_chans,
                   image_size=scale.image_size, small_input_stem=scale.small_input_stem, mean=mean, std=std,
                   extra={"objective": "lightly_nnclr", "steps": steps, "seed": seed})
    return {"wall_s": time.perf_counter() - t0, "steps": steps}


# ---------------------------------------------------------------------------- evaluation
def embed_splits(run_dir: Path, data: DataSpec, batch_size: int = 512) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Frozen features of the train and test splits through the exported encoder."""
    from medssl.data.medmnist import MedMNISTDataset
    from medssl.eval.features import embed
    from medssl.models.export import load_encoder

    model, preprocess = load_encoder(run_dir)
    out = {}
    for split in ("train", "test"):
        ds = MedMNISTDataset(**{k: v for k, v in data.split(split).items() if k != "name"})
        feats, labels = embed(model, ds, preprocess, batch_size=batch_size)
        out[split] = (feats.numpy(), np.asarray(labels).reshape(len(labels), -1)[:, 0].astype(np.int64))
    return out


def _summary(m: Dict[str, Any], ci: bool) -> Dict[str, Any]:
    keep = {"auc": m["auc"], "top1": m["accuracy"]}
    if ci:
        keep["auc_ci"] = m.get("auc_ci")
        keep["top1_ci"] = m.get("accuracy_ci")
    return keep


def evaluate_features(feats: Dict[str, Tuple[np.ndarray, np.ndarray]], task: str, num_classes: int, seed: int,
                      ci: bool, n_boot: int, weight_decay: Any = "auto", max_iter: int = 100
                      ) -> Dict[str, Dict[str, Any]]:
    """Every protocol of :data:`PROTOCOLS` on one encoder's features (label subsets drawn with ``seed``)."""
    from medssl.eval.knn import knn_evaluate
    from medssl.eval.linear import linear_probe
    from medssl.eval.subsets import stratified_fraction_plan

    (x, y), (xq, yq) = feats["train"], feats["test"]
    out: Dict[str, Dict[str, Any]] = {}
    for name, frac in FRACTIONS.items():
        idx = np.arange(len(y)) if frac >= 1.0 else stratified_fraction_plan(y, frac, seed, min_per_class=1).indices
        res = linear_probe(x[idx], y[idx], xq, yq, task, weight_decay=weight_decay, max_iter=max_iter, seed=seed,
                           num_classes=num_classes, ci=ci, n_boot=n_boot)
        out[name] = {**_summary(res.metrics, ci), "n_labels": int(idx.size), "weight_decay": res.weight_decay}
    m = knn_evaluate(x, y, xq, yq, task, k=20, temperature=0.07, num_classes=num_classes, ci=ci, n_boot=n_boot,
                     seed=seed)
    out["knn@k20"] = {**_summary(m, ci), "n_labels": int(len(y))}
    return out


def aggregate(per_seed: Dict[int, Dict[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """Mean and sample sd over seeds of AUC and top-1, per protocol."""
    from medssl.eval.metrics import mean_sd

    out: Dict[str, Dict[str, Any]] = {}
    for proto in PROTOCOLS:
        row = {}
        for key in ("auc", "top1"):
            vals = [per_seed[s][proto][key] for s in sorted(per_seed) if per_seed[s][proto][key] is not None]
            row[key] = dict(zip(("mean", "sd"), mean_sd(vals))) if vals else {"mean": None, "sd": None}
            row[key]["n"] = len(vals)
        out[proto] = row
    return out


# ---------------------------------------------------------------------------- purity
def purity_curve(run_dir: Path, key: str = "nn_purity") -> List[Tuple[int, float]]:
    """``(step, value)`` rows of ``key`` from a run's metrics.jsonl (empty if never logged)."""
    path = run_dir / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if key in r and r[key] is not None:
                rows.append((int(r["step"]), float(r[key])))
    return rows


def chance_purity(labels: np.ndarray) -> float:
    """Purity of a neighbour drawn at random from the train split: ``sum_c p_c^2``."""
    _, counts = np.unique(np.asarray(labels).reshape(len(labels), -1)[:, 0], return_counts=True)
    p = counts / counts.sum()
    return float(np.sum(p * p))


def plot_purity(curves: Dict[str, Dict[int, List[Tuple[int, float]]]], out: Path, title: str,
                chance: Optional[float] = None) -> Optional[Path]:
    """Mean (line) and per-seed (thin) neighbour purity against step, one colour per method;
    ``chance`` (a random neighbour's purity) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    drawn = False
    for (method, seeds), colour in zip(sorted(curves.items()), ("tab:blue", "tab:orange", "tab:green")):
        series = [dict(c) for c in seeds.values() if c]
        if not series:
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        for s in series:
            ax.plot(sorted(s), [s[k] for k in sorted(s)], color=colour, alpha=0.25, lw=0.8)
        ax.plot(steps, [float(np.mean([s[k] for s in series])) for k in steps], color=colour, lw=2,
                label=f"{METHOD_LABELS[method]} (mean of {len(series)} seeds)")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"random neighbour ({chance:.3f})")
    ax.set_xlabel("training step")
    ax.set_ylabel("neighbour purity (same label)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def purity_summary(curves: Dict[str, Dict[int, List[Tuple[int, float]]]]) -> Dict[str, Any]:
    """Per method: mean purity over seeds in the first and second half of training, and
    at each logged step; plus the per-seed share of early steps where pNNCLR > NNCLR."""
    out: Dict[str, Any] = {}
    for method, seeds in curves.items():
        series = [dict(c) for c in seeds.values() if c]
        if not series:
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        mean = {k: float(np.mean([s[k] for s in series])) for k in steps}
        half = steps[: max(1, len(steps) // 2)]
        out[method] = {"per_step_mean": mean,
                       "early_mean": float(np.mean([mean[k] for k in half])),
                       "late_mean": float(np.mean([mean[k] for k in steps[len(half):]])) if len(steps) > 1 else None}
    if "nnclr" in curves and "pnnclr" in curves:
        wins = {}
        for seed in sorted(set(curves["nnclr"]) & set(curves["pnnclr"])):
            a, b = dict(curves["nnclr"][seed]), dict(curves["pnnclr"][seed])
            common = sorted(set(a) & set(b))
            early = common[: max(1, len(common) // 2)]
            wins[str(seed)] = float(np.mean([b[k] > a[k] for k in early])) if early else None
        out["pnnclr_ahead_early_share"] = wins
    return out


def purity_png(position: int, name: str) -> str:
    return "purity.png" if position == 0 else f"purity_{name.split()[0]}.png"


def purity_title(name: str, backbone: str, batch_size: int) -> str:
    return f"{name}: neighbour purity ({backbone}, batch {batch_size})"


def replot(results_json: Path, out: Path) -> List[Path]:
    """Redraw the purity plots from a results JSON (chance level from its train files)."""
    from medssl.data.medmnist import MedMNISTDataset

    res = json.loads(Path(results_json).read_text())
    drawn = []
    for i, (name, ds) in enumerate(res["datasets"].items()):
        curves = {m: {int(s): [tuple(r) for r in c] for s, c in v.items()} for m, v in ds["purity_curves"].items()}
        chance = ds.get("purity_chance")
        if chance is None:
            chance = chance_purity(MedMNISTDataset(path=ds["path"], split="train").labels())
        png = plot_purity(curves, out / purity_png(i, name),
                          purity_title(name, res["scale"]["backbone"], res["scale"]["batch_size"]), chance)
        if png:
            drawn.append(png)
    return drawn


# ---------------------------------------------------------------------------- report
def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def markdown_tables(results: Dict[str, Any]) -> str:
    """Two tables per dataset: mean +- sd over seeds, and first seed with 95 % bootstrap CIs."""
    lines: List[str] = []
    for ds_name, ds in results["datasets"].items():
        methods = [m for m in ds["methods"] if ds["methods"][m].get("status") == "ok"]
        header = "| method | " + " | ".join(f"{p} AUC | {p} top-1" for p in PROTOCOLS) + " |"
        sep = "|---|" + "---:|" * (2 * len(PROTOCOLS))
        lines += [f"**{ds_name}**: test AUC and top-1, mean ± sd over seeds "
                  f"{', '.join(str(s) for s in results['scale']['seeds'])}", "", header, sep]
        for m in methods:
            agg = ds["methods"][m]["aggregate"]
            cells = []
            for p in PROTOCOLS:
                for key in ("auc", "top1"):
                    a = agg[p][key]
                    cells.append("n/a" if a["mean"] is None else f"{a['mean']:.3f} ± {a['sd']:.3f}")
            lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(cells) + " |")
        first = str(results["scale"]["seeds"][0])
        lines += ["", f"**{ds_name}**, seed {first}: point estimate [95 % stratified bootstrap CI]", "", header, sep]
        for m in methods:
            ev = ds["methods"][m]["per_seed"][first]
            cells = []
            for p in PROTOCOLS:
                for key in ("auc", "top1"):
                    ci = ev[p].get(f"{key}_ci") or [None, None]
                    cells.append(f"{_fmt(ev[p][key])} [{_fmt(ci[0])}, {_fmt(ci[1])}]")
            lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(cells) + " |")
        skipped = {m: v["status"] for m, v in ds["methods"].items() if v.get("status") != "ok"}
        for m, why in skipped.items():
            lines.append(f"\n{METHOD_LABELS[m]}: not run ({why}).")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--datasets", nargs="+", default=["bloodmnist"],
                   help="MedMNIST flags under --shared (bloodmnist, breastmnist, pneumoniamnist)")
    p.add_argument("--shared", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "medmnist"))
    p.add_argument("--out", default="docs/figures", help="where quality_results.json, quality_table.md, purity.png go")
    p.add_argument("--work", default=None, help="run directories (default: a temporary directory, removed)")
    p.add_argument("--steps", type=int, default=None, help="override the scale's steps per method")
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--backbone", default=None, help="override the scale's timm backbone (e.g. resnet50 on a GPU)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the scale's)")
    p.add_argument("--replot", default=None, metavar="JSON",
                   help="only redraw purity plots into --out from a quality_results.json")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def build_scale(args: argparse.Namespace) -> Scale:
    s = copy.deepcopy(SCALES[args.scale])
    if args.steps is not None:
        s = replace(s, steps=args.steps)
    if args.seeds:
        s = replace(s, seeds=tuple(args.seeds))
    if args.backbone:
        s = replace(s, backbone=args.backbone)
    if args.batch_size:
        s = replace(s, batch_size=args.batch_size)
    if args.threads:
        s = replace(s, threads=args.threads)
    if s.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--scale gpu needs a CUDA device; none is available here (use --scale cpu)")
    return s


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Train and evaluate everything; write the JSON, the table and the plot; return the results."""
    from medssl.data.medmnist import MedMNISTDataset

    scale = build_scale(args)
    torch.set_num_threads(scale.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if args.work is None:
        tmp = tempfile.mkdtemp(prefix="bench_quality_")
        work = Path(tmp)
    else:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: Dict[str, Any] = {
        "command": "python scripts/bench_quality.py " + " ".join(args.argv),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cuda": torch.cuda.is_available(),
                    "torch": torch.__version__, "load_before": os.getloadavg()},
        "scale_name": args.scale, "scale": asdict(scale), "lightly": lightly_available(), "datasets": {},
    }
    try:
        for data in resolve_datasets(args.datasets, Path(args.shared), args.scale, work):
            train = MedMNISTDataset(**{k: v for k, v in data.split("train").items() if k != "name"})
            task, num_classes = train.task, int(train.num_classes)
            steps = steps_for(scale, len(train))
            ds_res: Dict[str, Any] = {"source": data.source, "path": data.path, "preset": data.preset,
                                      "task": task, "num_classes": num_classes, "n_train": len(train),
                                      "steps": steps, "methods": {}}
            methods = list(SSL_METHODS) + ["lightly_nnclr", "random", "supervised"]
            curves: Dict[str, Dict[int, List[Tuple[int, float]]]] = {"nnclr": {}, "pnnclr": {}}
            for method in methods:
                entry: Dict[str, Any] = {"status": "ok", "runs": {}, "per_seed": {}}
                if method == "lightly_nnclr" and not results["lightly"]:
                    entry["status"] = "lightly is not importable (install the `bench` extra)"
                    ds_res["methods"][method] = entry
                    log(f"[{data.name}] {method}: skipped, lightly not importable")
                    continue
                for seed in scale.seeds:
                    run_dir = work / data.name.split()[0] / f"{method}_seed{seed}"
                    if run_dir.exists():
                        shutil.rmtree(run_dir)  # never resume a stale run: results must be fresh
                    if method in SSL_METHODS:
                        cfg = ssl_config(method, data, scale, seed, steps, run_dir)
                        info = run_ssl(cfg)
                        info["config"] = cfg
                        if method in curves:
                            curves[method][seed] = purity_curve(run_dir)
                    elif method == "random":
                        info = export_random(data, scale, seed, run_dir)
                        info["config"] = {"backbone": scale.backbone, "init": f"timm default, torch.manual_seed({seed})"}
                    elif method == "supervised":
                        info = train_supervised(data, scale, seed, steps, run_dir)
                        info["config"] = {"loss": "softmax cross-entropy, full labelled train split",
                                          "optim": {"name": "adam", "lr": scale.lr, "warmup_steps": scale.warmup_steps,
                                                    "schedule": "cosine to 0"},
                                          "augment": {"preset": data.preset, "views": 1,
                                                      "params": augment_params(data.preset)}}
                    else:
                        info = train_lightly_nnclr(data, scale, seed, steps, run_dir)
                        info["config"] = {"memory_bank": [scale.support_size, scale.proj_dim],
                                          "loss": "lightly NTXentLoss(temperature=0.1), symmetrised",
                                          "optim": {"name": "adam", "lr": scale.lr, "warmup_steps": scale.warmup_steps,
                                                    "schedule": "cosine to 0"},
                                          "augment": {"preset": data.preset, "views": 2,
                                                      "params": augment_params(data.preset)}}
                    t0 = time.perf_counter()
                    feats = embed_splits(run_dir, data)
                    ev = evaluate_features(feats, task, num_classes, seed, ci=seed == scale.seeds[0],
                                           n_boot=scale.n_boot, weight_decay=scale.probe_weight_decay,
                                           max_iter=scale.probe_max_iter)
                    info["eval_wall_s"] = time.perf_counter() - t0
                    entry["runs"][str(seed)] = info
                    entry["per_seed"][str(seed)] = ev
                    log(f"[{data.name}] {method} seed {seed}: train {info['wall_s']:.0f}s eval "
                        f"{info['eval_wall_s']:.0f}s linear@100% auc {ev['linear@100%']['auc']} "
                        f"knn top1 {ev['knn@k20']['top1']:.3f}")
                entry["aggregate"] = aggregate({int(s): v for s, v in entry["per_seed"].items()})
                ds_res["methods"][method] = entry
            ds_res["purity"] = purity_summary(curves)
            ds_res["purity_curves"] = {m: {str(s): c for s, c in v.items()} for m, v in curves.items()}
            ds_res["purity_chance"] = chance_purity(train.labels())
            png = plot_purity(curves, out / purity_png(len(results["datasets"]), data.name),
                              purity_title(data.name, scale.backbone, scale.batch_size), ds_res["purity_chance"])
            ds_res["purity_plot"] = str(png) if png else None
            results["datasets"][data.name] = ds_res
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    results["wall_s"] = time.perf_counter() - t_start
    results["machine"]["load_after"] = os.getloadavg()
    (out / "quality_results.json").write_text(json.dumps(results, indent=1))
    (out / "quality_table.md").write_text(markdown_tables(results))
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.replot:
        for png in replot(Path(args.replot), Path(args.out)):
            print(f"wrote {png}")
        return 0
    res = run_benchmark(args, log=lambda s: print(s, flush=True))
    print(markdown_tables(res))
    print(f"wall time {res['wall_s']:.0f} s; results in {Path(args.out) / 'quality_results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
