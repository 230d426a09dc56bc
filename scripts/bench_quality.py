"""Representation quality at equal budget: medssl's objectives against lightly's own recipe.

Every row trains a ResNet-18 with the small-input stem at 28 px (batch 128, a fixed number
of steps) and is scored by one evaluator: frozen features, a logistic probe (standardised
features, weight decay chosen on a held-out part of the probe's labels) on a stratified
100 / 10 / 2 % of the train labels, and kNN-20 (cosine), against ``--split val`` (for
tuning) or ``--split test`` (report once), with 95 % bootstrap CIs.

Rows (``--plan``; each plan's rows and overrides are in ``scripts/quality_plans.py``):

* ``table``: medssl SimCLR, NNCLR, pNNCLR, SNCLR, PSM (the shipped config, only steps and
  batch overridden), lightly 1.6's SimCLR and NNCLR recipes (lightly's heads, memory bank
  and loss, a per-image torchvision v2 augmentation, constant Adam 1e-3), random init and
  a supervised reference (cross-entropy on all train labels).
* ``ablate-simclr`` / ``ablate-nn`` / ``ablate-recipe``: one factor at a time against medssl as the issue ran
  it (issue 12), to explain the gap to lightly.
* ``long`` / ``ablate-long`` (issue 27): SimCLR and every neighbour objective, shipped recipe
  and paper form, at budgets of epochs; and the recipe options to test on val
  (``scripts/quality_curves.py`` draws their curves).

Data sets (``--dataset``): ``bloodmnist`` (the default) and ``pneumoniamnist`` are scored on
their official val / test splits, ``pathmnist-1000`` (the first 1000 images of PathMNIST's
train split, ../shared/data) by 5-fold cross-validation on those images (``--split cv``);
each medssl row starts from the data set's shipped config.

Each finished run is cached under ``--cache`` (default ``/work/quality_cache``, outside the
repository) in a directory named by the hash of everything that defines it (recipe, config
overrides, data file, steps, batch, seed, medssl version); evaluations are cached per split
next to it. A rerun resumes: finished runs are read back, unfinished ones trained; a medssl
run continues from its last checkpoint (every ``--ckpt-every`` steps; after a signal,
``--stop-after`` or ``kill -9``) over as many calls ("sittings") as it takes, each recorded
(``scripts/quality_sittings.py``). Two processes may share a cache (a run in progress is
locked). ``--no-train`` only reports, unfinished runs with their progress.

Budgets: ``--steps N ...`` or ``--epochs E ...`` (full batches of the train split). Each
budget is its own run with its own schedule; ``--curve-from-checkpoints`` instead trains
only the longest and evaluates the others on its encoder snapshots (one schedule).

    python scripts/bench_quality.py --plan ablate-simclr --split val       # hours on 2 CPU cores
    python scripts/bench_quality.py --plan table --split test --steps 100 300 --seeds 0 1 2
    python scripts/bench_quality.py --plan table --no-train --out docs/figures/quality.json
    python scripts/bench_quality.py --plan table --dataset pathmnist-1000   # --split cv
    python scripts/bench_quality.py --plan long --epochs 1 3 10 30 --seeds 0 1 2 --stop-after 36000  # sittings
    python scripts/bench_quality.py --smoke --cache /tmp/q                  # seconds
    python scripts/bench_quality.py --plan table --split test --device cuda --jobs 12 --deadline 400

On a GPU machine ``--device cuda --jobs N`` trains N runs at once (N processes of this
script take turns through the plan via the cache's locks); ``--deadline`` starts training
no new run after that many seconds, so a lease ends with every started run finished and cached.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace  # noqa: F401 - replace: Run variants (tests)
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_plans import EPOCHS_TOKEN, PLANS, Row  # noqa: E402
from quality_sittings import (RunStopped, Sittings, add_long_run_arguments, checkpoint_step,  # noqa: E402
                              cpu_model, epochs_to_steps, machine, stop_after)
from medssl.eval.pixels import HIST_BINS as COLOUR_BINS, colour_histogram  # noqa: E402  (the colour-histogram row)
# Bump when a recipe below changes what a run with the same spec computes (invalidates the cache).
RECIPE_VERSION = 1
# the benchmark's network and budget shape (issue 12): ResNet-18, small stem at 28 px, batch 128
BACKBONE, IMAGE_SIZE, BATCH_SIZE = "resnet18", 28, 128
FRACTIONS = {"probe@100%": 1.0, "probe@10%": 0.10, "probe@2%": 0.02}
PROTOCOLS = (*FRACTIONS, "knn@20")


@dataclass(frozen=True)
class BenchData:
    """A benchmark data set: its file under ``--data-dir``, its MedMNIST flag when the file
    name is not one, the shipped config its medssl rows start from, and how it is scored:
    ``split`` (the official val / test splits) or ``cv5`` (5-fold cross-validation on the
    train split, for a subset that has no other split)."""

    file: str
    config: str
    flag: Optional[str] = None
    scoring: str = "split"


DATASETS: Dict[str, BenchData] = {
    "bloodmnist": BenchData("bloodmnist.npz", "configs/bloodmnist.yaml"),
    "pneumoniamnist": BenchData("pneumoniamnist.npz", "configs/pneumoniamnist.yaml"),
    # rows 0..999 of PathMNIST's official train split (../shared/data/MANIFEST.md)
    "pathmnist-1000": BenchData("pathmnist_train_first1000.npz", "configs/pathmnist.yaml", flag="pathmnist",
                                scoring="cv5"),
}
CV_FOLDS = 5


def bench_data(dataset: str) -> BenchData:
    """The table's entry, or for any other MedMNIST flag (and the smoke test's sample) its
    official file scored on its splits, medssl rows from the BloodMNIST config."""
    return DATASETS.get(dataset) or BenchData(f"{dataset}.npz", DATASETS["bloodmnist"].config)


@dataclass(frozen=True)
class Run:
    """Everything that defines one trained encoder (its cache key is a hash of this)."""

    kind: str
    dataset: str
    data_file: str
    steps: int
    batch_size: int
    seed: int
    image_size: int = 28
    backbone: str = "resnet18"
    config: Optional[str] = None
    overrides: Tuple[str, ...] = ()
    config_file: Optional[str] = None  # where the config is read (default: ``config``)
    device: str = "cpu"  # where it trains (``cuda``: medssl's CUDA defaults, bf16 autocast and GPU views)

    def config_path(self) -> Path:
        return REPO / (self.config_file or self.config or "")

    def spec(self) -> Dict[str, Any]:
        import medssl

        f = Path(self.data_file)
        spec = {**asdict(self), "data_file": f.name, "data_bytes": f.stat().st_size,
                "recipe_version": RECIPE_VERSION, "medssl": medssl.__version__}
        spec.pop("config_file")  # the parsed config below is what defines the run
        if self.device == "cpu":
            spec.pop("device")  # CPU runs keep the keys they had before GPUs were a choice
        if self.config:
            # the parsed config, not its text: a comment edited in the config retrains nothing
            from medssl.config import load_yaml

            spec["config_data"] = load_yaml(self.config_path())  # as medssl reads it
            exclusion = support_set_exclusion(spec["config_data"], self.overrides)
            if exclusion:  # issue 27 made it the default: runs trained before exclude nothing
                spec["support_set_exclusion"] = exclusion
            recipe = recipe_of(spec["config_data"], self.overrides)
            if recipe is not None:
                # a recipe lives in medssl's code, not in the config's text: what it sets for
                # this run is part of what defines it (runs without a recipe keep their keys)
                spec["recipe_applied"] = recipe
        return spec

    def key(self) -> str:
        return spec_key(self.spec())


def spec_key(spec: Mapping[str, Any]) -> str:
    """The cache key of a run's spec (a hash of its canonical JSON)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def current_key_of(stored: Mapping[str, Any]) -> str:
    """The key a cached run's ``spec.json`` has under today's keying. Entries written before
    the key held the parsed config keyed the config's text (``config_text``); a copied entry
    names its source (``rekeyed_from``), which is not part of what defines it."""
    from medssl.config import parse_yaml

    spec = {k: v for k, v in stored.items() if k != "rekeyed_from"}
    if "config_text" in spec:
        spec["config_data"] = parse_yaml(spec.pop("config_text")) or {}
    return spec_key(spec)


def recipe_of(config: Mapping[str, Any], overrides: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The keys the (parsed) config's named recipe, after ``overrides``, sets for its
    objective, or None."""
    from medssl.config import apply_overrides
    from medssl.train import recipes

    return recipes.recipe_of(apply_overrides(dict(config), list(overrides)))  # a deep copy


def support_set_exclusion(config: Mapping[str, Any], overrides: Sequence[str]) -> Optional[List[str]]:
    """What the look-ups of a run with this (parsed) config and ``overrides`` exclude
    (``support_set.exclude_same_image`` / ``exclude_same_slide``, medssl's defaults filled
    in): ``["same_image", ...]`` for an objective with a support set, else None."""
    from medssl.config import apply_overrides
    from medssl.registry import OBJECTIVES

    raw = apply_overrides(dict(config), list(overrides))
    objective = raw.get("objective") if isinstance(raw.get("objective"), Mapping) else {}
    name = str(objective.get("name", "pnnclr"))
    if name not in OBJECTIVES or not OBJECTIVES.get(name).requirements.support_set:
        return None
    given = raw.get("support_set") if isinstance(raw.get("support_set"), Mapping) else {}
    kept = [what for what, default in (("same_image", True), ("same_slide", False))
            if given.get(f"exclude_{what}", default)]
    return kept or None


def runs_of(rows: Sequence[Row], dataset: str, data_file: str, steps: Sequence[int], seeds: Sequence[int],
            batch_size: int, backbone: str, image_size: int, extra: Sequence[str] = (),
            device: str = "cpu") -> Iterator[Tuple[Row, Run]]:
    """Every (row, run) of a plan, budgets outermost, seeds next: the first seed of every row
    finishes before any second seed starts. An override value ``epochs:E`` (a row's
    warm-up, say) becomes ``E`` epochs of this data set's train split in steps."""
    per_epoch: List[int] = []  # full batches per epoch, read once when a row needs it

    def in_steps(override: str) -> str:
        key, _, value = override.partition("=")
        if not value.startswith(EPOCHS_TOKEN):
            return override
        if not per_epoch:
            per_epoch.append(train_size(data_file, dataset) // batch_size)
        return f"{key}={int(round(float(value[len(EPOCHS_TOKEN):]) * per_epoch[0]))}"

    for n in steps:
        for seed in seeds:
            for row in rows:
                config = bench_data(dataset).config if row.kind == "medssl" else None
                overrides = tuple(in_steps(o) for o in (*row.overrides, *extra)) if row.kind == "medssl" else ()
                yield row, Run(row.kind, dataset, data_file, n, batch_size, seed, image_size, backbone, config,
                               overrides, config_file=row.config_file if row.kind == "medssl" else None,
                               device=device)


# ---------------------------------------------------------------------------- training
def data_spec(run: Run, split: str) -> Dict[str, Any]:
    return dataset_spec(run.data_file, run.dataset, split)


def dataset_spec(data_file: str, dataset: str, split: str) -> Dict[str, Any]:
    """The medssl data mapping of ``split`` of a benchmark data set's file."""
    spec = {"name": "medmnist", "path": data_file, "split": split}
    flag = bench_data(dataset).flag
    return {**spec, "flag": flag} if flag else spec


def train_medssl(run: Run, out: Path, ckpt_every: int = 100, export_steps: Sequence[int] = ()) -> Dict[str, Any]:
    """``medssl pretrain <shipped config>`` with the run's steps, batch, seed and overrides,
    continuing from the newest checkpoint in ``out`` if there is one (``train.resume=auto``).
    A checkpoint every ``ckpt_every`` steps; encoder snapshots at ``export_steps``. A run
    that stops early raises :class:`RunStopped` (its checkpoint is kept for the next call)."""
    import medssl

    overrides = [
        f"data={json.dumps(data_spec(run, 'train'))}", "val_data=null", f"seed={run.seed}", f"out_dir={out}",
        f"train.max_steps={run.steps}", f"train.batch_size={run.batch_size}", "train.num_workers=0",
        f"train.device={run.device}", "train.knn_every=0", f"train.ckpt_every={min(ckpt_every, run.steps)}",
        "train.keep_last=2", "train.resume=auto", f"train.export_steps={json.dumps(sorted(export_steps))}",
        f"train.log_every={max(1, min(run.steps // 20, 50))}", f"model.backbone={run.backbone}",
        f"augment.image_size={run.image_size}", *run.overrides,
    ]
    cfg = medssl.load_pretrain_config(run.config_path(), overrides)
    res = medssl.pretrain(cfg, progress=False)
    if res.steps != run.steps:  # stopped by a signal (or collapse): never cache a short run
        raise RunStopped(res.steps, run.steps)
    return {"last_loss": res.last_loss, "overrides": overrides}


def _raw_images(ds: Any) -> np.ndarray:
    """Every image of an opened data set as stored: uint8 ``[N, H, W]`` or ``[N, H, W, C]``."""
    return np.stack([ds[i][0] for i in range(len(ds))])


def _images(run: Run) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Train images ``[N, 3, H, W]`` uint8 (gray repeated), int labels ``[N]``, classes."""
    import medssl

    ds = medssl.open_dataset(data_spec(run, "train"))
    arr = _raw_images(ds)
    x = torch.from_numpy(arr if arr.ndim == 4 else arr[..., None]).permute(0, 3, 1, 2).contiguous()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1).contiguous()
    y = torch.as_tensor(np.asarray(ds.labels()).reshape(len(ds), -1)[:, 0].astype(np.int64))
    return x, y, int(ds.num_classes)


def torchvision_recipe(image_size: int, colour: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """The augmentation of lightly's examples as issue 12 ran it: crop 0.2-1, both flips,
    colour jitter 0.4/0.4/0.2/0.1 (p 0.8), grayscale p 0.2, normalise 0.5/0.5; per image.
    ``colour=False``: without the jitter and the grayscale (crops and flips only)."""
    from torchvision.transforms import v2

    ops: List[Any] = [v2.RandomResizedCrop(image_size, scale=(0.2, 1.0), antialias=True),
                      v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if colour:
        ops += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    return v2.Compose([*ops, v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])


# a peer recipe with its views' colour kept: the same network, loss and loop, no colour operations
NO_COLOUR_SUFFIX = "_no_colour"


def _batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """Index batches of a seeded reshuffle every epoch, full batches only."""
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            if done == steps:
                return
            yield perm[i:i + batch_size]
            done += 1


def train_peer(run: Run, out: Path) -> Dict[str, Any]:
    """lightly 1.6's SimCLR / NNCLR (its heads, NNMemoryBankModule, NTXentLoss at its default
    temperature), the supervised reference, or a random init: our backbone, the torchvision
    recipe per image, constant Adam 1e-3 without weight decay. A kind ending in
    ``_no_colour`` is the same recipe with views that keep their colour."""
    import medssl

    if run.kind == "colour_histogram":
        out.mkdir(parents=True, exist_ok=True)  # nothing to train: evaluate() computes the features
        return {"features": f"colour_histogram({COLOUR_BINS} bins, mean, std per channel)"}
    torch.manual_seed(run.seed)
    dev = torch.device(run.device)
    enc = medssl.build_backbone(run.backbone, in_chans=3, image_size=run.image_size, small_input_stem=True)
    losses: List[float] = []
    colour = not run.kind.endswith(NO_COLOUR_SUFFIX)
    kind = run.kind.removesuffix(NO_COLOUR_SUFFIX)
    if kind != "random":
        from lightly.loss import NTXentLoss
        from lightly.models.modules import (NNCLRPredictionHead, NNCLRProjectionHead, NNMemoryBankModule,
                                            SimCLRProjectionHead)

        x_all, y_all, num_classes = _images(run)
        aug = torchvision_recipe(run.image_size, colour)
        f = enc.num_features
        heads: Dict[str, torch.nn.Module] = {}
        if kind == "lightly_simclr":
            heads["proj"] = SimCLRProjectionHead(f, 512, 128)
        elif kind == "lightly_nnclr":
            heads["proj"], heads["pred"] = NNCLRProjectionHead(f, 512, 128), NNCLRPredictionHead(128, 512, 128)
            bank = NNMemoryBankModule(size=(4096, 128))
        elif kind == "supervised":
            heads["fc"] = torch.nn.Linear(f, num_classes)
        else:
            raise ValueError(f"unknown run kind {run.kind!r}")
        model = torch.nn.ModuleDict({"enc": enc, **heads}).to(dev)
        if kind == "lightly_nnclr":
            bank.to(dev)
        crit = NTXentLoss()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for idx in _batches(len(x_all), run.batch_size, run.steps, run.seed):
            # per image on the CPU, as lightly's examples do in their DataLoader workers
            views = [torch.stack([aug(img) for img in x_all[idx]]).to(dev, non_blocking=True)
                     for _ in range(1 if kind == "supervised" else 2)]
            if kind == "supervised":
                loss = torch.nn.functional.cross_entropy(model["fc"](enc(views[0])), y_all[idx].to(dev))
            elif kind == "lightly_simclr":
                loss = crit(model["proj"](enc(views[0])), model["proj"](enc(views[1])))
            else:
                z0, z1 = model["proj"](enc(views[0])), model["proj"](enc(views[1]))
                p0, p1 = model["pred"](z0), model["pred"](z1)
                nn0, nn1 = bank(z0.detach(), update=False), bank(z1.detach(), update=True)
                loss = 0.5 * (crit(nn0, p1) + crit(nn1, p0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    medssl.export_encoder(enc.cpu(), out / "encoder.safetensors", backbone=run.backbone, in_chans=3,
                          image_size=run.image_size, small_input_stem=True, mean=[0.5] * 3, std=[0.5] * 3,
                          extra={"objective": run.kind, "steps": run.steps, "seed": run.seed})
    with open(out / "metrics.jsonl", "w") as fh:
        fh.writelines(json.dumps({"step": i + 1, "loss": v}) + "\n" for i, v in enumerate(losses))
    return {"last_loss": losses[-1] if losses else None}


# ---------------------------------------------------------------------------- evaluation
def _labels(v: Any) -> np.ndarray:
    """Single-label int labels ``[N]`` from ``[N]`` or ``[N, 1]``."""
    return np.asarray(v).reshape(len(v), -1)[:, 0].astype(np.int64)


def _record(m: Dict[str, Any], n_labels: int, **extra: Any) -> Dict[str, Any]:
    """What the cache keeps of one protocol's metrics."""
    return {"accuracy": m["accuracy"], "accuracy_ci": m.get("accuracy_ci"), "auc": m["auc"],
            "auc_ci": m.get("auc_ci"), "n_labels": int(n_labels), **extra}


def features(run: Run, encoder: Optional[Tuple[Any, Any]], split: str) -> Tuple[np.ndarray, Any, Any]:
    """(features ``[N, D]``, labels, the opened data set) of ``split``: the frozen features of
    ``encoder`` (``medssl.load_encoder``'s model and preprocessing), or with ``None`` the
    colour histogram of the raw images."""
    import medssl

    ds = medssl.open_dataset(data_spec(run, split))
    if encoder is None:
        return colour_histogram(_raw_images(ds)), ds.labels(), ds
    model, preprocess = encoder
    x, y = medssl.embed(model, ds, preprocess, device=torch.device(run.device))
    return x, y, ds


def evaluate(run: Run, encoder_dir: Path, split: str, n_boot: int) -> Dict[str, Any]:
    """The one evaluator: probe on 100 / 10 / 2 % of the train labels (drawn with the run's
    seed, stratified) and kNN-20 on all of them, scored on ``split`` with bootstrap CIs
    (``split="cv"``: :func:`evaluate_cv`)."""
    import medssl
    from medssl.eval.subsets import stratified_fraction

    encoder = None if run.kind == "colour_histogram" else medssl.load_encoder(encoder_dir)
    x, y, train = features(run, encoder, "train")
    if split == "cv":
        return evaluate_cv(run, x, y, train.task, int(train.num_classes), n_boot)
    xq, yq, _ = features(run, encoder, split)
    y, yq = _labels(y), _labels(yq)
    k = dict(task=train.task, num_classes=int(train.num_classes), ci=True, n_boot=n_boot, seed=run.seed)
    out: Dict[str, Any] = {}
    for name, frac in FRACTIONS.items():
        idx = np.arange(len(y)) if frac >= 1.0 else stratified_fraction(y, frac, run.seed)
        out[name] = _record(medssl.linear_probe(x[idx], y[idx], xq, yq, **k).metrics, idx.size)
    out["knn@20"] = _record(medssl.knn_evaluate(x, y, xq, yq, k=20, **k), len(y))
    out["n_query"] = int(len(yq))
    return out


def evaluate_cv(run: Run, x: np.ndarray, y: Any, task: str, num_classes: int, n_boot: int,
                folds: int = CV_FOLDS) -> Dict[str, Any]:
    """The same protocols, cross-validated on the train split alone: stratified ``folds``
    folds (seeded by the run's seed); each fold is scored by a probe / kNN fitted on the
    other folds (the probe on 100 / 10 / 2 % of their labels), and the metrics and their
    bootstrap CIs are computed once over the pooled out-of-fold scores of every image.
    The encoder saw every image without labels during pretraining, as the issue's
    protocol for a subset without a test split has it."""
    import medssl
    from sklearn.model_selection import StratifiedKFold

    from medssl.eval import evaluate_predictions, knn_predict
    from medssl.eval.subsets import stratified_fraction

    y = _labels(y)
    split = list(StratifiedKFold(folds, shuffle=True, random_state=run.seed).split(x, y))
    out: Dict[str, Any] = {}
    for name, frac in (*FRACTIONS.items(), ("knn@20", None)):
        scores: Optional[np.ndarray] = None
        n_labels = []
        for tr, te in split:
            if frac is not None and frac < 1.0:
                tr = tr[stratified_fraction(y[tr], frac, run.seed)]
            n_labels.append(int(tr.size))
            if frac is None:
                s = knn_predict(x[tr], y[tr], x[te], k=20, num_classes=num_classes).numpy()
            else:
                s = medssl.linear_probe(x[tr], y[tr], x[te], y[te], task=task, num_classes=num_classes,
                                        seed=run.seed).scores
            s = np.asarray(s, dtype=np.float64).reshape(len(te), -1)
            if scores is None:
                scores = np.zeros((len(y), s.shape[1]))
            scores[te] = s
        m = evaluate_predictions(y, scores, task, ci=True, n_boot=n_boot, seed=run.seed)
        out[name] = _record(m, np.mean(n_labels), folds=folds)
    return out


def last_diagnostics(run_dir: Path) -> Dict[str, Any]:
    """Last logged value of each diagnostic in a run's metrics.jsonl (loss, nn_purity, emb_std)."""
    last: Dict[str, Any] = {}
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            last.update({k: row[k] for k in ("loss", "nn_purity", "emb_std") if row.get(k) is not None})
    return last


# ---------------------------------------------------------------------------- cache
class Cache:
    """``<root>/<key>/``: spec.json, encoder.safetensors, train.json, eval_<split>_b<n>.json.
    A run trains in ``<key>.partial`` and is renamed when done, so a killed run leaves no
    half entry; ``<key>.lock`` (holding the pid) keeps a second process off it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._older: Optional[Dict[str, Path]] = None

    def trained(self, run: Run) -> Optional[Path]:
        """The run's finished directory: ``<key>/``, or an entry cached under an older keying
        of the same run (:func:`current_key_of`); None when it is not trained."""
        key = run.key()
        d = self.root / key
        if (d / "train.json").is_file():
            return d
        d = self._older_entries().get(key)
        return d if d is not None and (d / "train.json").is_file() else None

    def _older_entries(self) -> Dict[str, Path]:
        """Today's key -> directory, for finished entries whose directory name is another key."""
        if self._older is None:
            self._older = {}
            for f in sorted(self.root.glob("*/spec.json")):
                if f.parent.name.endswith(".partial"):
                    continue
                try:
                    key = current_key_of(json.loads(f.read_text()))
                except (ValueError, OSError):
                    continue  # not a spec this script wrote
                if key != f.parent.name:
                    self._older.setdefault(key, f.parent)
        return self._older

    def _lock(self, key: str) -> bool:
        lock = self.root / f"{key}.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
                os.kill(pid, 0)
                return False  # alive: someone else trains it
            except (ValueError, ProcessLookupError):
                lock.unlink(missing_ok=True)  # its owner died
                return self._lock(key)
            except PermissionError:
                return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True

    def train(self, run: Run, ckpt_every: int = 100, export_steps: Sequence[int] = (),
              stop_after_s: Optional[float] = None) -> Optional[Path]:
        """The run's directory, training it first when it is not cached; None when another
        process holds its lock. A medssl run continues its partial entry from the last
        checkpoint (:mod:`quality_sittings`); ``stop_after_s`` stops it then (checkpointed,
        :class:`RunStopped`). Other kinds train from the start."""
        key = run.key()
        done = self.root / key
        cached = self.trained(run)
        if cached is not None:
            return cached
        if not self._lock(key):
            return None
        try:
            part = self.root / f"{key}.partial"
            run_dir = part / "run"
            if run.kind != "medssl" or checkpoint_step(run_dir) is None:  # nothing to continue
                shutil.rmtree(part, ignore_errors=True)
                part.mkdir()
                (part / "spec.json").write_text(json.dumps(run.spec(), indent=1, sort_keys=True))
            sittings = Sittings(part)
            sittings.close_killed(run_dir)
            sitting = sittings.open(checkpoint_step(run_dir) or 0)
            try:
                if run.kind == "medssl":
                    with stop_after(stop_after_s):
                        info = train_medssl(run, run_dir, ckpt_every, export_steps)
                else:
                    info = train_peer(run, run_dir)
            except RunStopped as stop:
                sittings.close(sitting, "stopped", stop.steps_done)
                raise
            except BaseException:
                sittings.close(sitting, "failed", checkpoint_step(run_dir) or 0)
                raise
            sittings.close(sitting, "finished", run.steps)
            if run.device == "cuda":
                info["gpu"] = torch.cuda.get_device_name()
            summary = sittings.summary()
            info.update(wall_s=summary["wall_s"], steps_done=run.steps, n_sittings=summary["n_sittings"],
                        sittings=summary["sittings"], machine=machine(), load=os.getloadavg(), host=platform.node(),
                        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        diagnostics=last_diagnostics(run_dir), snapshots=sorted(snapshot_steps(run_dir)))
            (part / "train.json").write_text(json.dumps(info, indent=1))
            shutil.rmtree(done, ignore_errors=True)
            part.rename(done)
            shutil.rmtree(done / "run" / "checkpoints", ignore_errors=True)  # the encoders are all we keep
            return done
        finally:
            (self.root / f"{key}.lock").unlink(missing_ok=True)

    def progress(self, run: Run) -> Optional[Dict[str, Any]]:
        """An unfinished run's record: steps done (its newest checkpoint), wall time and
        sittings so far; None when it has no partial entry."""
        part = self.root / f"{run.key()}.partial"
        if not part.is_dir():
            return None
        summary = Sittings(part).summary()
        return {**summary, "steps_done": checkpoint_step(part / "run") or 0, "steps": run.steps}

    def _failure_file(self, run: Run) -> Path:
        return self.root / f"{run.key()}.failed"

    def record_failure(self, run: Run, why: str) -> None:
        """``<key>.failed``: the run failed in one ``--jobs`` worker, so the others skip it."""
        self._failure_file(run).write_text(why)

    def failure(self, run: Run) -> Optional[str]:
        f = self._failure_file(run)
        return f.read_text() if f.is_file() else None

    def clear_failure(self, run: Run) -> None:
        self._failure_file(run).unlink(missing_ok=True)

    def evaluation(self, run: Run, split: str, n_boot: int, compute: bool,
                   at_step: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """The run's evaluation on ``split`` (cached next to it); ``at_step``: of its encoder
        snapshot at that step (``--curve-from-checkpoints``), None when it has none."""
        d = self.trained(run)
        if d is None:
            return None
        encoder_dir = d / "run"
        name = f"eval_{split}_b{n_boot}.json"
        if at_step is not None and at_step != run.steps:
            from medssl.train.loop import snapshot_path

            encoder_dir = snapshot_path(d / "run", at_step).parent
            if not encoder_dir.is_dir():
                return None
            name = f"eval_{split}_b{n_boot}_at{at_step}.json"
        path = d / name
        if path.is_file():
            return json.loads(path.read_text())
        if not compute:
            return None
        t0 = time.perf_counter()
        ev = evaluate(run, encoder_dir, split, n_boot)
        ev["wall_s"] = time.perf_counter() - t0
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two processes may evaluate one run
        tmp.write_text(json.dumps(ev, indent=1))
        tmp.rename(path)
        return ev


def snapshot_steps(run_dir: Path) -> List[int]:
    """Steps of the encoder snapshots a run exported (``train.export_steps``)."""
    d = Path(run_dir) / "snapshots"
    return [int(p.name[5:]) for p in d.glob("step_*") if (p / "encoder.safetensors").is_file()] if d.is_dir() else []


# ---------------------------------------------------------------------------- report
def t_interval(values: Sequence[float]) -> Tuple[float, List[float]]:
    """Sample sd and the 95 % Student-t CI of the mean of ``values`` (at least two)."""
    from scipy import stats

    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.975, len(values) - 1)) * sd / np.sqrt(len(values))
    return sd, [mean - half, mean + half]


def summarise(values: Sequence[Dict[str, Any]], proto: str, key: str) -> Dict[str, Any]:
    """Mean over seeds; with one seed its bootstrap CI (the evaluation set's sampling
    only), with more the sample sd and a 95 % Student-t CI of the mean over seeds (the
    training's seed-to-seed spread)."""
    vals = [v[proto][key] for v in values]
    out: Dict[str, Any] = {"mean": float(np.mean(vals)), "n": len(vals)}
    if len(vals) == 1:
        out["ci"] = values[0][proto].get(f"{key}_ci")
    else:
        sd, ci = t_interval(vals)
        out.update(sd=sd, ci=ci, ci_kind="t over seeds")
    return out


def cell(s: Dict[str, Any]) -> str:
    ci = s.get("ci") or [float("nan")] * 2
    sd = f" ± {s['sd']:.3f}" if "sd" in s else ""
    return f"{s['mean']:.3f}{sd} [{ci[0]:.3f}, {ci[1]:.3f}]"


def paired(runs: Sequence[Dict[str, Any]], row: str, reference: str, steps: int,
           protos: Sequence[str] = ("probe@2%", "knn@20")) -> Dict[str, Any]:
    """``row`` minus ``reference`` in accuracy, seed by seed (one seed draws the same label
    subset and probe split for both, so the difference cancels that draw): mean, sd and a
    95 % Student-t CI of the mean difference over the seeds both have."""
    def by_seed(name: str) -> Dict[int, Dict[str, Any]]:
        return {e["run"]["seed"]: e["eval"] for e in runs
                if e["row"] == name and e.get("steps", e["run"]["steps"]) == steps and e["eval"]}

    a, b = by_seed(row), by_seed(reference)
    seeds = sorted(set(a) & set(b))
    out: Dict[str, Any] = {"seeds": seeds}
    for p in protos:
        d = np.array([a[s][p]["accuracy"] - b[s][p]["accuracy"] for s in seeds])
        entry: Dict[str, Any] = {"mean": float(d.mean()) if d.size else None, "n": int(d.size)}
        if d.size > 1:
            sd, ci = t_interval(d)
            entry.update(sd=sd, ci=ci)
        out[p] = entry
    return out


def paired_markdown(report: Dict[str, Any]) -> str:
    """The report's rows against its ``paired_against`` row (``report["paired"]``, from
    :func:`paired`)."""
    lines = []
    reference = report["paired_against"]
    for steps, rows in report["paired"].items():
        lines += [f"**{report['dataset']}, {report['split']} split, {steps} steps: minus {reference}, paired by seed**",
                  "", "| row | seeds | probe@2% | knn@20 |", "|---|---|---:|---:|"]
        for name, d in rows.items():
            if not d["seeds"]:
                continue
            cells = []
            for p in ("probe@2%", "knn@20"):
                e = d[p]
                ci = f" [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]" if "ci" in e else ""
                cells.append(f"{e['mean']:+.3f}{ci}")
            lines.append(f"| {name} | {len(d['seeds'])} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def full_markdown(report: Dict[str, Any]) -> str:
    """The tables, then the paired differences when the report has them."""
    return markdown(report) + ("\n" + paired_markdown(report) if "paired" in report else "")


def markdown(report: Dict[str, Any]) -> str:
    """One table per budget: accuracy; one seed: mean [95 % bootstrap CI]; several seeds:
    mean ± sd [95 % t-CI of the mean over seeds]."""
    lines = []
    for steps, rows in report["tables"].items():
        epochs = next((r.get("epochs") for r in rows.values() if r.get("epochs")), None)
        budget = f"{steps} steps ({epochs:g} epoch{'' if epochs == 1 else 's'})" if epochs else f"{steps} steps"
        lines += [f"**{report['dataset']}, {report['split']} split, {budget}, batch {report['batch_size']}**",
                  "", "| row | seeds | " + " | ".join(PROTOCOLS) + " | kNN AUC | train s | overrides |",
                  "|---|---|" + "---:|" * (len(PROTOCOLS) + 2) + "---|"]
        for name, r in rows.items():
            if not r["n"]:
                doing = "; ".join(f"seed {p['seed']} at step {p['steps_done']} of {p['steps']}"
                                  for p in r.get("in_progress", []))
                lines.append(f"| {name} | 0 ({'in progress: ' + doing if doing else 'not run yet'}) |"
                             + " |" * (len(PROTOCOLS) + 3))
                continue
            accs = " | ".join(cell(r["accuracy"][p]) for p in PROTOCOLS)
            ov = " ".join(f"`{o}`" for o in r["overrides"] if not o.startswith("objective.name=")) or "—"
            lines.append(f"| {name} | {r['n']} | {accs} | {r['auc']['knn@20']['mean']:.3f} | "
                         f"{r['train_s']:.0f} | {ov} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", choices=sorted(PLANS), default="table")
    p.add_argument("--rows", nargs="+", default=None, help="only these rows of the plan (by name)")
    p.add_argument("--split", choices=("val", "test", "cv"), default=None,
                   help="tune on val; report test once; cv: 5-fold cross-validation on train (the default "
                        "for a data set without val / test splits, else val)")
    p.add_argument("--dataset", default="bloodmnist",
                   help=f"one of {sorted(DATASETS)} (its file under --data-dir), or any MedMNIST flag there")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "medmnist"))
    p.add_argument("--steps", type=int, nargs="+", default=None, help="budgets in steps (default 100; --smoke: 2)")
    add_long_run_arguments(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--cache", default="/work/quality_cache", help="finished runs (outside the repository)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where runs train and embed (cuda: medssl rows run with their CUDA defaults - bf16 "
                        "autocast, views made on the GPU; a GPU run is cached apart from its CPU twin; "
                        "with --no-train the GPU runs in the cache are reported on any machine)")
    p.add_argument("--jobs", type=int, default=1,
                   help="train this many runs at once, in worker processes sharing the cache (a GPU machine: "
                        "several per GPU; each worker uses --threads CPU threads)")
    p.add_argument("--deadline", type=float, default=None,
                   help="seconds: start training no new run after this long (runs already trained, by this "
                        "process or another, are still evaluated; every finished run stays cached)")
    p.add_argument("--paired-against", default=None, metavar="ROW",
                   help="also report each row minus this row, seed by seed, with a t-interval over seeds")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --jobs' processes
    p.add_argument("--no-train", action="store_true", help="report what the cache holds; train nothing")
    p.add_argument("--out", default=None, help="write the report JSON here (and the table next to it as .md)")
    p.add_argument("--smoke", action="store_true",
                   help="seconds: the embedded sample, timm's test_resnet, 2 steps, batch 16")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.ckpt_every < 1:
        p.error(f"--ckpt-every must be at least 1, got {args.ckpt_every}")
    if args.epochs is not None and any(e <= 0 for e in args.epochs):
        p.error(f"--epochs must be positive, got {args.epochs}")
    if args.device == "cuda" and not args.no_train and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here; use --device cpu")
    return args


def worker_argv(argv: Sequence[str], deadline: Optional[float]) -> List[str]:
    """The command line of one ``--jobs`` worker: this one without ``--jobs`` / ``--out`` /
    ``--deadline`` (the worker gets what is left of the deadline), plus ``--worker``."""
    out: List[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--jobs", "--out", "--deadline"):
            skip = "=" not in a
            continue
        out.append(a)
    if deadline is not None:
        out += ["--deadline", f"{deadline:.0f}"]
    return [*out, "--worker"]


def run_workers(args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """Train the plan in ``args.jobs`` processes of this script at once: each takes the
    next run nobody holds (the cache's locks share the work) and evaluates it."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), *worker_argv(args.argv, args.deadline)]
    log(f"bench_quality: {args.jobs} workers: {' '.join(cmd[1:])}")
    procs = []
    for i in range(args.jobs):
        procs.append(subprocess.Popen(cmd))
        time.sleep(2.0)  # staggered: the workers claim different first runs
    failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        log(f"bench_quality: {len(failed)} of {args.jobs} workers failed (their runs are retried on the next call)")


def resolve_data(args: argparse.Namespace) -> Tuple[str, str, str, int]:
    """(dataset name, file, backbone, image size); ``--smoke`` writes the embedded sample."""
    if args.smoke:
        from medssl.data.sample import write_sample

        root = Path(args.cache) / "sample_data"
        f = root / "medmnist" / "ihcstain.npz"
        if not f.is_file():
            write_sample(root, seed=0)
        return "ihcstain", str(f), "test_resnet", 28
    f = Path(args.data_dir) / bench_data(args.dataset).file
    if not f.is_file():
        raise SystemExit(f"bench_quality: no {f}; put the official MedMNIST file there or pass --data-dir")
    return args.dataset, str(f), BACKBONE, IMAGE_SIZE


def train_size(data_file: str, dataset: str) -> int:
    """Images in the data set's train split (what an epoch budget is counted in)."""
    import medssl

    return len(medssl.open_dataset(dataset_spec(data_file, dataset, "train")))


def run_plan(args: argparse.Namespace, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Train (unless --no-train) and evaluate every run of the plan in order; return the report."""
    start = time.monotonic()
    torch.set_num_threads(args.threads)
    dataset, data_file, backbone, image_size = resolve_data(args)
    scoring = bench_data(dataset).scoring
    if args.split is None:
        args.split = "cv" if scoring == "cv5" else "val"
    if (args.split == "cv") != (scoring == "cv5"):
        raise SystemExit(f"bench_quality: --split {args.split} does not fit {dataset}, which is scored by "
                         + ("5-fold cross-validation on train (--split cv)" if scoring == "cv5"
                            else "its official val / test splits (--split val or test)"))
    rows = PLANS[args.plan]
    if args.rows:
        unknown = sorted(set(args.rows) - {r.name for r in rows})
        if unknown:
            raise SystemExit(f"bench_quality: no row {unknown} in plan {args.plan!r}; rows: {[r.name for r in rows]}")
        rows = [r for r in rows if r.name in args.rows]
    if scoring == "cv5" and any(r.kind == "supervised" for r in rows):
        # cross-validation scores every image out of fold; a network trained on all the train
        # labels has seen the label of every image it is scored on, so its row would be a leak
        if args.rows:
            raise SystemExit(f"bench_quality: {dataset} is scored by cross-validation on its train images, and "
                             "the supervised row trains on all their labels (every scored image's label would "
                             "have been seen); leave it out of --rows")
        log(f"bench_quality: no supervised row on {dataset} (cross-validated on the images it would train on)")
        rows = [r for r in rows if r.kind != "supervised"]
    batch = 16 if args.smoke else args.batch_size
    n_boot = 50 if args.smoke else args.n_boot
    epochs_of: Dict[int, float] = {}
    if args.epochs is not None:
        epochs_of = epochs_to_steps(args.epochs, train_size(data_file, dataset), batch)
        steps = sorted(epochs_of)
    else:
        steps = sorted(set(args.steps or ([2] if args.smoke else [100])))
    # --curve-from-checkpoints: one run of the longest budget, the others its snapshots
    trained_steps, snapshots = (([max(steps)], [n for n in steps if n != max(steps)])
                                if args.curve_from_checkpoints else (steps, []))
    # smoke: heads and queue small enough for seconds (medssl rows; the peers' heads are lightly's)
    extra = ("model.proj_hidden=64", "model.pred_hidden=64", "model.proj_dim=32", "support_set.size=64"
             ) if args.smoke else ()
    cache = Cache(Path(args.cache))
    pending: List[Tuple[Row, Run]] = []
    plan = list(runs_of(rows, dataset, data_file, trained_steps, args.seeds, batch, backbone, image_size, extra,
                        args.device))
    stop_at = None if args.stop_after is None else start + args.stop_after
    if args.jobs > 1 and not args.no_train:
        for _, run in plan:
            cache.clear_failure(run)  # this call tries every unfinished run again, once
        run_workers(args, log)
        for row, run in plan:
            why = cache.failure(run)
            if why is not None:
                log(f"bench_quality: {row.name} seed {run.seed} {run.steps} steps failed: {why}")
    for row, run in plan:
        if args.no_train or args.jobs > 1 or cache.trained(run):
            continue
        if args.worker and cache.failure(run) is not None:
            continue  # another worker of this call tried it and failed: once is enough
        if args.deadline is not None and time.monotonic() - start > args.deadline:
            log(f"bench_quality: past the {args.deadline:.0f} s deadline; the runs left are not started")
            break
        if stop_at is not None and time.monotonic() >= stop_at:
            log(f"bench_quality: past --stop-after {args.stop_after:.0f} s; the runs left are not started")
            break
        t0 = time.perf_counter()
        try:
            trained = cache.train(run, args.ckpt_every, snapshots,
                                  stop_after_s=None if stop_at is None else stop_at - time.monotonic())
        except RunStopped as stop:
            log(f"{row.name} seed {run.seed} {run.steps} steps: stopped at step {stop.steps_done} "
                f"(checkpointed; the next call continues it)")
            break
        except Exception as exc:  # noqa: BLE001 - a worker goes on with the next run
            if not args.worker:
                raise
            cache.record_failure(run, f"{type(exc).__name__}: {exc}")
            log(f"{row.name} seed {run.seed} {run.steps} steps: FAILED ({type(exc).__name__}: {exc}); not cached")
            continue
        if trained is None:
            log(f"{row.name} seed {run.seed} {run.steps} steps: another process is training it, skipped")
            pending.append((row, run))
            continue
        ev = cache.evaluation(run, args.split, n_boot, compute=True)
        log(f"{row.name} seed {run.seed} {run.steps} steps: {time.perf_counter() - t0:.0f} s, "
            f"probe@2% {ev['probe@2%']['accuracy']:.3f} knn@20 {ev['knn@20']['accuracy']:.3f}")
    if args.worker:
        return {}
    report: Dict[str, Any] = {
        "command": "python scripts/bench_quality.py " + " ".join(args.argv), "plan": args.plan,
        "dataset": dataset, "data_file": data_file, "split": args.split, "batch_size": batch,
        "backbone": backbone, "image_size": image_size, "small_input_stem": True, "n_boot": n_boot,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": args.threads, "load": os.getloadavg(),
                    "device": args.device, "jobs": args.jobs,
                    **({"gpu": torch.cuda.get_device_name()} if torch.cuda.is_available() else {})},
        "tables": {}, "runs": [],
    }
    report.update(budgets=[{"steps": n, "epochs": epochs_of.get(n)} for n in steps],
                  schedule=("one run per budget" if not snapshots else
                            f"snapshots of the {max(steps)}-step run (--curve-from-checkpoints)"))
    for row, run in plan:
        # runs another process trained (another plan's workers too) are scored here, deadline or not
        d = cache.trained(run)
        for n in (steps if snapshots else [run.steps]):
            ev = cache.evaluation(run, args.split, n_boot, compute=not args.no_train, at_step=n)
            entry = {"row": row.name, "why": row.why, "key": d.name if d else run.key(), "run": asdict(run),
                     "steps": n, "epochs": epochs_of.get(n), "snapshot": n != run.steps, "eval": ev,
                     "train": json.loads((d / "train.json").read_text()) if d else None,
                     "progress": None if d else cache.progress(run)}
            report["runs"].append(entry)
    for n in steps:
        table = {}
        for row in rows:
            here = [e for e in report["runs"] if e["row"] == row.name and e["steps"] == n]
            done = [e for e in here if e["eval"]]
            evs = [e["eval"] for e in done]
            table[row.name] = {
                "n": len(done), "seeds": [e["run"]["seed"] for e in done], "kind": row.kind,
                "epochs": epochs_of.get(n),
                "in_progress": [{"seed": e["run"]["seed"], **{k: e["progress"][k] for k in ("steps_done", "steps",
                                                                                           "wall_s", "n_sittings")}}
                                for e in here if e["progress"]],
                "overrides": list(row.overrides), "why": row.why,
                "train_s": float(np.mean([e["train"]["wall_s"] for e in done])) if done else None,
                "accuracy": {p: summarise(evs, p, "accuracy") for p in PROTOCOLS} if done else {},
                "auc": {p: summarise(evs, p, "auc") for p in PROTOCOLS} if done else {},
            }
        report["tables"][str(n)] = table
    if args.paired_against:
        if args.paired_against not in {r.name for r in rows}:
            raise SystemExit(f"bench_quality: --paired-against {args.paired_against!r} is not a row of this report; "
                             f"rows: {[r.name for r in rows]}")
        report["paired_against"] = args.paired_against
        report["paired"] = {str(n): {r.name: paired(report["runs"], r.name, args.paired_against, n)
                                     for r in rows if r.name != args.paired_against} for n in steps}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        out.with_suffix(".md").write_text(full_markdown(report))
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    report = run_plan(args, log=lambda s: print(s, flush=True))
    if not args.worker:
        print(full_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
