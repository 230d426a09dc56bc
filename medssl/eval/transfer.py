"""Transfer evaluation: an exported encoder on a labelled dataset, end to end.

:func:`run_transfer` loads the encoder (its ``preprocess`` adapts channels and input
size), embeds the train and test splits once (cached in the output directory, see
:mod:`medssl.eval.cache`), draws a stratified label subset per seed (saved as
``subsets/seed{S}.json``), runs the protocol (``linear`` / ``knn`` on the frozen
features, or ``finetune``), scores the test split with bootstrap CIs, aggregates the
seeds (mean +- sd) and writes ``report.json``, ``report.md`` and the plots.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from medssl.device import resolve_device
from medssl.eval import slide_level
from medssl.eval.cache import cached_features, fingerprint
from medssl.eval.config import TransferConfig
from medssl.eval.seeds import across_seeds, seeds_to_run
from medssl.errors import ConfigError, DataError
from medssl.threads import plan_workers
from medssl.fileio import check_output_path
from medssl.provenance import sha256_file
from medssl.provenance import data_provenance
from medssl.text import name_list
from medssl.threads import thread_budget

log = logging.getLogger(__name__)
HEADLINE = ("auc", "accuracy", "balanced_accuracy", "macro_f1", "ece", "brier")


@dataclass
class TransferResult:
    """Where the outputs went, the report dict, and which feature caches were reused."""

    out_dir: Path
    report: Dict[str, Any]
    cache_hits: Dict[str, bool] = field(default_factory=dict)


def encoder_file(path: str) -> Path:
    """The ``.safetensors`` file behind a run directory / encoder path (as load_encoder reads it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "encoder.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    return p


def encoder_provenance(path: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
    p = encoder_file(path)
    return {"path": str(p), "sha256": sha256_file(p), "encoder_json": dict(meta)}


def check_overlap(train_ds: Any, test_ds: Any, allowed: bool) -> List[str]:
    """Refuse train / test sets that share images, files, slides or patients unless
    ``allowed`` (then one warning line for stderr and the report)."""
    from medssl.eval.overlap import overlap, overlap_warning

    found = overlap(train_ds, test_ds)
    if found is None:
        return []
    if not allowed:
        raise ConfigError(f"train and test overlap: {found}. A probe scored on its own training images measures "
                          "memorisation; choose disjoint splits (e.g. --split-train train --split-test test), or "
                          "pass --allow-overlap (allow_overlap: true) if this is what you mean")
    return [overlap_warning(found)]


def open_labelled(spec: Any, split: str, role: str) -> Tuple[Any, Dict[str, Any]]:
    """``(dataset, resolved config)``; raises DataError when the split carries no labels."""
    from medssl.data.open import open_dataset, resolve_config

    cfg = resolve_config(spec, split=split)
    ds = open_dataset(cfg)
    if ds.task is None:
        raise DataError(
            f"{role} data {cfg.get('name')!r} split {split!r} is unlabelled (task None): transfer needs "
            "labels. Pick a labelled split (e.g. STL-10 'train'/'test', not 'unlabeled') or another dataset"
        )
    if len(ds) == 0:
        raise DataError(f"{role} data {cfg.get('name')!r} split {split!r} is empty")
    return ds, cfg


def _embed_split(model: torch.nn.Module, preprocess: Any, ds: Any, cfg: TransferConfig,
                 device: torch.device, progress: bool, stage: str) -> Tuple[np.ndarray, np.ndarray]:
    from medssl.eval.features import embed

    workers = plan_workers(cfg.num_workers, "num_workers")[0]
    feats, labels = embed(model, ds, preprocess, batch_size=cfg.batch_size, num_workers=workers,
                          device=device, progress=progress, stage=stage)
    return feats, labels


def _subset(labels: np.ndarray, cfg: TransferConfig, seed: int, out: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    from medssl.eval.subsets import save_indices, stratified_fraction_plan

    plan = stratified_fraction_plan(labels, cfg.label_fraction, seed, cfg.min_per_class)
    path = save_indices(out / "subsets" / f"seed{seed}.json", plan.indices, plan.meta())
    return plan.indices, {"file": str(path.relative_to(out)), **plan.meta()}


def _probe(cfg: TransferConfig, seed: int, x: np.ndarray, y: np.ndarray, xq: np.ndarray, yq: np.ndarray,
           task: str, num_classes: int, names: List[str], ci: bool = True) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Test scores and metrics of the linear / kNN protocol on frozen features (``ci``: with
    each seed's bootstrap CIs; a panel computes its own, over seeds)."""
    if cfg.protocol == "linear":
        from medssl.eval.linear import linear_probe

        res = linear_probe(x, y, xq, yq, task, weight_decay=cfg.linear.weight_decay, max_iter=cfg.linear.max_iter,
                           seed=seed, num_classes=num_classes, class_names=names, ci=ci, n_boot=cfg.report.n_boot)
        res.metrics["protocol"]["selection_table"] = res.selection
        return res.scores, res.metrics
    from medssl.eval.knn import knn_evaluate, knn_predict

    metrics = knn_evaluate(x, y, xq, yq, task, k=cfg.knn.k, temperature=cfg.knn.temperature,
                           num_classes=num_classes, class_names=names, ci=ci, n_boot=cfg.report.n_boot, seed=seed)
    scores = knn_predict(x, y, xq, cfg.knn.k, cfg.knn.temperature, num_classes).numpy().astype(np.float64)
    return scores, metrics


def _finetune(cfg: TransferConfig, seed: int, model: torch.nn.Module, preprocess: Any, train_ds: Any,
              idx: np.ndarray, test_ds: Any, task: str, num_classes: int, names: List[str],
              device: torch.device, progress: bool) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    from medssl.augment.presets import build_augmentation
    from medssl.eval.finetune import finetune, pick_preset
    from medssl.eval.metrics import evaluate_predictions

    meta = preprocess.meta
    preset = cfg.finetune.augment
    if preset == "auto":
        preset = pick_preset(train_ds.describe(), int(getattr(train_ds, "in_channels", 3)))
    params = {"name": preset, "mean": tuple(meta["mean"]), "std": tuple(meta["std"]), **cfg.finetune.augment_params}
    if preset == "gray":
        params.setdefault("out_channels", meta["in_chans"])
    augment = build_augmentation(params, meta["image_size"])
    ft = cfg.finetune
    res = finetune(model, train_ds, idx, test_ds, preprocess, task=task, num_classes=num_classes, augment=augment,
                   epochs=ft.epochs, lr=ft.lr, head_lr=ft.head_lr, weight_decay=ft.weight_decay,
                   batch_size=ft.batch_size, seed=seed, device=device, eval_batch_size=cfg.batch_size,
                   head_init=ft.head_init, probe_weight_decay=ft.probe_weight_decay, progress=progress)
    metrics = evaluate_predictions(test_ds.labels(), res.scores, task, names, ci=True, n_boot=cfg.report.n_boot,
                                   seed=seed)
    metrics["protocol"] = {**res.protocol, "augment": preset, "augment_params": dict(cfg.finetune.augment_params)}
    return res.scores, res.embeddings, metrics


def aggregate(per_seed: List[Dict[str, Any]]) -> Tuple[Dict[str, Any], List[str]]:
    """Mean and sample sd across seeds of each headline metric and of per-class
    sensitivity / specificity; a seed where a metric is null is left out and noted."""
    from medssl.eval.metrics import mean_sd

    notes: List[str] = []

    def summarise(values: List[Optional[float]], what: str) -> Dict[str, Any]:
        valid = [v for v in values if v is not None and not math.isnan(v)]
        if len(valid) < len(values):
            notes.append(f"{what}: null on {len(values) - len(valid)} of {len(values)} seed(s), left out of mean +- sd")
        if not valid:
            return {"mean": None, "sd": None, "n": 0, "values": values}
        m, s = mean_sd(valid)
        return {"mean": m, "sd": s, "n": len(valid), "values": values,
                "same_on_all_seeds": len(valid) > 1 and len(set(valid)) == 1}

    out: Dict[str, Any] = {k: summarise([r["metrics"].get(k) for r in per_seed], k) for k in HEADLINE}
    for key in ("sensitivity", "specificity", "auc_per_class"):
        if key == "auc_per_class" and key not in per_seed[0]["metrics"]:
            continue  # metrics made without it (older or hand-built): nothing to aggregate
        names = list(per_seed[0]["metrics"][key])
        out[key] = {n: summarise([r["metrics"][key].get(n) for r in per_seed], f"{key} of {n}") for n in names}
    return out, notes


def run_transfer(cfg: TransferConfig, progress: bool = True) -> TransferResult:
    """Run one transfer evaluation as configured and write its report; see the module docstring.

    ``progress`` shows each long stage (embedding a split, the probe per seed, each
    fine-tuning epoch; :mod:`medssl.progress`). ``out`` is checked first, but created only
    once the encoder and both datasets have been read, so a failed start leaves nothing
    behind. It is locked for the run (:class:`~medssl.runlock.RunLock`): a second
    evaluation into the same ``out`` is refused, naming the PID of the first; an ``out``
    that already exists is locked first thing, so a busy one is refused before any reading.
    """
    from medssl.models.export import load_encoder
    from medssl.runlock import RunLock

    out = check_output_path(cfg.out, "output directory (out / --out)")
    lock = RunLock(out, "out")
    if out.is_dir():  # it may be busy: say so before reading anything (nothing new is created)
        lock.acquire()
    try:
        device = resolve_device(cfg.device)
        model, preprocess = load_encoder(cfg.encoder, device=device)
        train_ds, train_cfg = open_labelled(cfg.train_spec(), cfg.split_train, "train")
        test_ds, test_cfg = open_labelled(cfg.test_spec(), cfg.split_test, "test")
        names, class_names_source, name_warnings = check_label_spaces(train_ds, test_ds,
                                                                      cfg.allow_class_name_mismatch)
        name_warnings = name_warnings + check_overlap(train_ds, test_ds, cfg.allow_overlap)
        inputs = _Inputs(
            model, preprocess, device, encoder_provenance(cfg.encoder, preprocess.meta), train_ds, test_ds,
            names, class_names_source,
            data_prov={"train": data_provenance(train_cfg, train_ds.describe(), train_ds.source_files()),
                       "test": data_provenance(test_cfg, test_ds.describe(), test_ds.source_files())},
            warnings=name_warnings + _label_warnings(train_ds.labels(), test_ds.labels(), train_ds.task, names),
        )
        lock.acquire()  # creates out when it is new
        # on a CPU, torch's threads follow cfg.threads for the run (medssl/threads.py)
        budget = thread_budget(cfg.threads, key="threads") if device.type == "cpu" else contextlib.nullcontext()
        with budget:
            return _evaluate(cfg, inputs, out, progress)
    finally:
        lock.release()


@dataclass
class _Inputs:
    """What run_transfer has read and checked before anything is written."""

    model: torch.nn.Module
    preprocess: Any
    device: torch.device
    enc_prov: Dict[str, Any]
    train_ds: Any
    test_ds: Any
    names: List[str]
    class_names_source: Dict[str, Any]
    data_prov: Dict[str, Any]
    warnings: List[str]


def _evaluate(cfg: TransferConfig, inputs: _Inputs, out: Path, progress: bool) -> TransferResult:
    """Features, the protocol per seed, predictions, plots and the report, into ``out``."""
    from medssl.eval.predictions import FILE as PREDICTIONS, write_predictions
    from medssl.eval.report import build_report, write_report
    from medssl.progress import Progress

    model, preprocess, device, names = inputs.model, inputs.preprocess, inputs.device, inputs.names
    train_ds, test_ds, enc_prov, data_prov = inputs.train_ds, inputs.test_ds, inputs.enc_prov, inputs.data_prov
    task, num_classes = train_ds.task, int(train_ds.num_classes)

    cache_hits: Dict[str, bool] = {}
    feats: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    if cfg.protocol in ("linear", "knn"):
        for role, ds in (("train", train_ds), ("test", test_ds)):
            split = cfg.split_train if role == "train" else cfg.split_test
            key = fingerprint(enc_prov["sha256"], data_prov[role], split)
            f, y, hit = cached_features(out / f"features_{role}_{split}.npz", key,
                                        lambda ds=ds, role=role, split=split: _embed_split(
                                            model, preprocess, ds, cfg, device, progress, f"embed {role} ({split})"))
            feats[role], cache_hits[f"{role}:{split}"] = (f, y), hit
        train_labels = feats["train"][1]
    else:
        train_labels = train_ds.labels()

    per_seed: List[Dict[str, Any]] = []
    predictions: List[Tuple[int, np.ndarray, np.ndarray]] = []
    first: Dict[str, Any] = {}
    stage = {"linear": "linear probe", "knn": "kNN"}.get(cfg.protocol, "fine-tune")
    seed_list, seed_notes = seeds_to_run(cfg, train_labels)  # one seed where seeds change nothing
    seeds = Progress(len(seed_list), f"{stage}, {len(seed_list)} seed(s)", enabled=progress, unit="seed")
    with seeds:
        for seed in seed_list:
            idx, subset = _subset(train_labels, cfg, seed, out)
            if cfg.protocol == "finetune":
                scores, emb, metrics = _finetune(cfg, seed, model, preprocess, train_ds, idx, test_ds, task,
                                                 num_classes, names, device, progress)
                y_test = test_ds.labels()
            else:
                (x, y), (xq, y_test) = feats["train"], feats["test"]
                scores, metrics = _probe(cfg, seed, x[idx], y[idx], xq, y_test, task, num_classes, names)
                emb = xq
            slide_metrics = slide_level.for_dataset(test_ds, y_test, scores, task)  # None unless tiles of slides
            if slide_metrics is not None:
                metrics["slide_level"] = slide_metrics
            per_seed.append({"seed": seed, "subset": subset, "metrics": metrics})
            predictions.append((seed, y_test, scores))
            if not first:
                first = {"scores": scores, "embeddings": emb, "labels": y_test}
            if metrics.get("auc") is not None:
                seeds.set_postfix(seed=seed, auc=f"{metrics['auc']:.4f}")
            seeds.update(1)
    agg, notes = aggregate(per_seed)
    notes += seed_notes + across_seeds(agg, predictions[0][1], [p[2] for p in predictions], task,
                                       cfg.report.n_boot, seed_list[0])
    write_predictions(out / PREDICTIONS, predictions, cfg.split_test, task, names)

    plots: Dict[str, str] = {}
    if cfg.report.plots:
        from medssl.eval.plots import write_plots

        plots = write_plots(out, first["labels"], first["scores"], task, names, per_seed[0]["metrics"],
                            embeddings=first["embeddings"] if cfg.report.tsne else None,
                            seed=cfg.seed, tsne_max_points=cfg.report.tsne_max_points,
                            shown=_figure_note(per_seed), ece_across_seeds=_ece_across_seeds(agg, len(per_seed)))
    report = build_report(cfg, per_seed, agg, inputs.warnings + notes, enc_prov, data_prov, plots, cache_hits,
                          inputs.class_names_source)
    report["predictions"] = PREDICTIONS
    write_report(report, out)
    return TransferResult(out, report, cache_hits)


def _class_names(ds: Any) -> List[str]:
    return [str(n) for n in ds.class_names] or [str(i) for i in range(int(ds.num_classes))]


def check_label_spaces(train_ds: Any, test_ds: Any, allow_name_mismatch: bool = False
                       ) -> Tuple[List[str], Dict[str, Any], List[str]]:
    """``(class names to report, where they come from, warnings)`` for a train / test pair.

    Task and class count must agree, and so must the class names, index by index
    (compared without case or surrounding spaces): class 1 of BreastMNIST is not class 1
    of PCAM even though both are binary. With ``allow_name_mismatch`` differing names are
    accepted with a warning and the train names are reported. Raises DataError otherwise.
    """
    task, num_classes = train_ds.task, int(train_ds.num_classes)
    if test_ds.task != task or int(test_ds.num_classes) != num_classes:
        raise DataError(
            f"train and test data disagree: train is {task} with {num_classes} classes, test is "
            f"{test_ds.task} with {test_ds.num_classes}; use a test set with the same label space"
        )
    train_names, test_names = _class_names(train_ds), _class_names(test_ds)
    agree = [n.strip().lower() for n in train_names] == [n.strip().lower() for n in test_names]
    source = {"from": "train", "train": train_names, "test": test_names, "agree": agree}
    if agree:
        return train_names, source, []
    order = " (the same names in another order)" if sorted(map(str.lower, train_names)) == sorted(
        map(str.lower, test_names)) else ""
    pairs = ", ".join(f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(train_names, test_names)) if a != b)
    if not allow_name_mismatch:
        raise DataError(
            f"train and test data name their classes differently{order} ({pairs}; train "
            f"{_describe_source(train_ds)}, test {_describe_source(test_ds)}), so class i of one may not be class i "
            "of the other. Use a test set with the same classes in the same order (a dataset config's "
            "class_names sets them), or pass --allow-class-name-mismatch (allow_class_name_mismatch: true) "
            "if they are the same classes under other names; the report then uses the train names"
        )
    return train_names, source, [
        f"class names differ between train ({name_list(train_names)}) and test ({name_list(test_names)}){order}; "
        "accepted by allow_class_name_mismatch, the report uses the train names"
    ]


def _describe_source(ds: Any) -> str:
    """A short name of a dataset for messages: its type and split, and its file or folder."""
    d = ds.describe()
    files = ds.source_files()
    where = d.get("path") or d.get("source") or (str(files[0].parent) if files else "")
    return f"{d.get('dataset')} split {d.get('split') or 'all'}" + (f" ({where})" if where else "")


def _figure_note(per_seed: List[Dict[str, Any]]) -> str:
    """Which seed the figures show, for their titles."""
    seed, n = per_seed[0]["seed"], len(per_seed)
    return f"seed {seed} (the only seed)" if n == 1 else f"seed {seed} (first of {n} seeds)"


def _ece_across_seeds(agg: Dict[str, Any], n_seeds: int) -> str:
    """``mean ± sd`` of the ECE across seeds for the reliability diagram (the figure's own
    ECE is one seed's and would otherwise be mistaken for the report's)."""
    e = agg.get("ece", {})
    if n_seeds < 2 or e.get("mean") is None:
        return ""
    return f"{e['mean']:.3f} ± {e['sd']:.3f}"


def _label_warnings(train: np.ndarray, test: np.ndarray, task: str, names: List[str]) -> List[str]:
    """Classes absent from a whole split (so AUC / sensitivity of that class are undefined)."""
    if task == "multilabel":
        return []
    out = []
    for role, y in (("train", train), ("test", test)):
        present = set(np.asarray(y).reshape(len(y), -1)[:, 0].astype(np.int64).tolist())
        missing = [n for i, n in enumerate(names) if i not in present]
        if missing:
            out.append(f"the {role} split has no example of class(es) {name_list(missing)}")
    return out
