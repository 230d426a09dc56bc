"""Label-efficiency panels: one encoder (and its baselines) on several targets, each at
several label fractions / counts per class, in one call.

:func:`run_panel` reads every target's train and test splits once, embeds each once per
feature source (the encoder, ``random``, ``pixels``; :mod:`medssl.eval.panel_sources`),
draws the label subsets once per (target, point, seed) and probes every source on the
same subsets, so every extra point costs only probes and every comparison is paired. A
subset depends on the seed and the target's labels only (the rule of
:mod:`medssl.eval.subsets`), so two encoders evaluated in two calls get the same subsets
too, and a point equals a single-fraction ``run_transfer`` of that fraction.
Rows, CIs and the report: :mod:`medssl.eval.panel_report`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from medssl.device import resolve_device
from medssl.errors import DataError, MedSSLError
from medssl.eval.config import TransferConfig
from medssl.eval.panel_config import Point, panel_points, target_specs, unique_names
from medssl.eval.panel_sources import FeatureSource, FeatureStore, build_sources
from medssl.fileio import check_output_path
from medssl.progress import Progress
from medssl.threads import thread_budget

log = logging.getLogger(__name__)


@dataclass
class TargetResult:
    """One scored target: its description, subsets and every probe's test scores."""

    name: str
    info: Dict[str, Any]
    y_test: np.ndarray
    # (source, point) -> per seed: {"seed", "subset", "metrics", "scores"}
    runs: Dict[Tuple[str, Point], List[Dict[str, Any]]] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)


@dataclass
class PanelResult:
    """Where the outputs went, the report dict, the failed targets and the feature reuse."""

    out_dir: Path
    report: Dict[str, Any]
    failed: List[Dict[str, str]] = field(default_factory=list)
    cache_hits: Dict[str, str] = field(default_factory=dict)


def _check_targets(cfg: TransferConfig, names: List[str], specs: List[Any]) -> None:
    """Stop before any work when a target's (or the test data's) path is missing or its
    format unknown."""
    from medssl.data.open import resolve_config

    checks = [(f"target {n!r}", s, cfg.split_train) for n, s in zip(names, specs)]
    if cfg.test_data is not None:
        checks.append(("test_data", cfg.test_data, cfg.split_test))
    for what, spec, split in checks:
        try:
            resolve_config(spec, split=split)
        except MedSSLError as exc:
            raise DataError(f"{what} ({spec}) cannot be read: {exc}") from exc


def run_panel(cfg: TransferConfig, progress: bool = True) -> PanelResult:
    """Run the label-efficiency panel of ``cfg`` and write its report into ``cfg.out``.

    A target that fails while it is read or scored is reported (``failed`` and the
    report's ``failed_targets``) and the others still run; the caller decides what a
    failure means (``medssl transfer`` exits with status 2 naming it).
    """
    from medssl.eval.panel_report import write_panel_report
    from medssl.eval.transfer import encoder_provenance
    from medssl.models.export import load_encoder
    from medssl.runlock import RunLock

    out = check_output_path(cfg.out, "output directory (out / --out)")
    lock = RunLock(out, "out")
    if out.is_dir():
        lock.acquire()
    try:
        specs = target_specs(cfg)
        names = unique_names(specs)
        _check_targets(cfg, names, specs)
        device = resolve_device(cfg.device)
        model, preprocess = load_encoder(cfg.encoder, device=device)
        enc_prov = encoder_provenance(cfg.encoder, preprocess.meta)
        sources = build_sources(cfg, model, preprocess, enc_prov, device)
        points = panel_points(cfg)
        lock.acquire()
        budget = thread_budget(cfg.threads, key="threads") if device.type == "cpu" else contextlib.nullcontext()
        with budget:
            store = FeatureStore()
            results, failed = _run_targets(cfg, out, names, specs, sources, points, store, progress)
            report = write_panel_report(cfg, out, results, failed, sources, points, store.hits)
            return PanelResult(out, report, failed, dict(store.hits))
    finally:
        lock.release()


def _run_targets(cfg: TransferConfig, out: Path, names: List[str], specs: List[Any], sources: List[FeatureSource],
                 points: List[Point], store: FeatureStore, progress: bool
                 ) -> Tuple[List[TargetResult], List[Dict[str, str]]]:
    per_target = len(sources) * len(points) * cfg.seeds
    desc = (f"panel: {len(specs)} target(s) x {len(points)} point(s) x {cfg.seeds} seed(s) x "
            f"{len(sources)} feature source(s)")
    results: List[TargetResult] = []
    failed: List[Dict[str, str]] = []
    with Progress(len(specs) * per_target, desc, enabled=progress, unit="probe") as bar:
        for name, spec in zip(names, specs):
            done_before = bar.n
            try:
                results.append(_run_target(cfg, out, name, spec, len(specs) == 1, sources, points, store, bar,
                                           progress))
            except (MedSSLError, OSError) as exc:
                msg = f"target {name!r} ({spec}) failed: {exc}"
                failed.append({"target": name, "data": str(spec), "error": str(exc)})
                log.error("%s", msg)
                bar.write(f"medssl: error: {msg}; the other targets go on")
                bar.update(per_target - (bar.n - done_before))  # its probes will not run: count them off
    return results, failed


def _subsets(labels: np.ndarray, cfg: TransferConfig, points: List[Point], folder: Path, name: str
             ) -> Tuple[Dict[Tuple[Point, int], Tuple[np.ndarray, Dict[str, Any]]], List[str]]:
    """Every (point, seed)'s subset of ``labels``, saved under ``folder``, and warnings."""
    from medssl.eval.subsets import per_class_plan, save_indices, stratified_fraction_plan

    plans: Dict[Tuple[Point, int], Tuple[np.ndarray, Dict[str, Any]]] = {}
    warnings: List[str] = []
    sizes: Dict[int, List[str]] = {}
    for point in points:
        for seed in cfg.seed_list():
            if point.kind == "fraction":
                plan = stratified_fraction_plan(labels, point.value, seed, cfg.min_per_class)
                slug = f"fraction{point.value:g}"
            else:
                plan = per_class_plan(labels, int(point.value), seed)
                slug = f"per_class{int(point.value)}"
            path = save_indices(folder / "subsets" / f"{slug}_seed{seed}.json", plan.indices, plan.meta())
            plans[(point, seed)] = (plan.indices, {"file": str(path.relative_to(folder.parent.parent)),
                                                   **plan.meta()})
        meta = plans[(point, cfg.seed)][1]
        if point.kind == "fraction" and meta["size"] > meta["target"]:
            warnings.append(f"{name}, {point.label}: {meta['target']} labelled image(s) would leave a class without "
                            f"one; raised to at least {cfg.min_per_class} per class ({meta['size']} images)")
        warnings += [f"{name}, {point.label}: {n}" for n in meta["notes"] if "dominates" not in n]
        sizes.setdefault(meta["size"], []).append(point.label)
    warnings += [f"{name}: {' and '.join(labels_)} give the same number of labelled images ({n})"
                 for n, labels_ in sizes.items() if len(labels_) > 1]
    return plans, warnings


def _run_target(cfg: TransferConfig, out: Path, name: str, spec: Any, only: bool, sources: List[FeatureSource],
                points: List[Point], store: FeatureStore, bar: Progress, progress: bool) -> TargetResult:
    from medssl.eval.transfer import _label_warnings, _probe, check_label_spaces, open_labelled
    from medssl.provenance import data_provenance

    train_ds, train_cfg = open_labelled(spec, cfg.split_train, "train")
    test_spec = cfg.test_data if (only and cfg.test_data is not None) else spec
    test_ds, test_cfg = open_labelled(test_spec, cfg.split_test, "test")
    class_names, names_source, warnings = check_label_spaces(train_ds, test_ds, cfg.allow_class_name_mismatch)
    task, num_classes = train_ds.task, int(train_ds.num_classes)
    data_prov = {"train": data_provenance(train_cfg, train_ds.describe(), train_ds.source_files()),
                 "test": data_provenance(test_cfg, test_ds.describe(), test_ds.source_files())}
    warnings += _label_warnings(train_ds.labels(), test_ds.labels(), task, class_names)
    folder = out / "targets" / name
    plans, subset_warnings = _subsets(train_ds.labels(), cfg, points, folder, name)
    warnings += subset_warnings
    info = {"name": name, "data": data_prov, "task": task, "num_classes": num_classes, "class_names": class_names,
            "class_names_source": names_source, "n_train": len(train_ds), "n_test": len(test_ds),
            "split_train": cfg.split_train, "split_test": cfg.split_test}
    result: TargetResult = TargetResult(name, info, np.empty(0), warnings=warnings)
    for source in sources:
        feats = {}
        for role, ds, split in (("train", train_ds, cfg.split_train), ("test", test_ds, cfg.split_test)):
            legacy = out / f"features_{role}_{split}.npz" if source.name == "encoder" and only else None
            path = folder / f"features_{source.name}_{role}_{split}.npz"
            feats[role] = store.get(source, data_prov[role], split, path, ds,
                                    f"{name}: {source.name} features, {role} ({split})", progress, legacy)
        (x, y), (xq, yq) = feats["train"], feats["test"]
        if result.y_test.size == 0:
            result.y_test = yq
        for point in points:
            runs = []
            for seed in cfg.seed_list():
                idx, subset = plans[(point, seed)]
                scores, metrics = _probe(cfg, seed, x[idx], y[idx], xq, yq, task, num_classes, class_names, ci=False)
                runs.append({"seed": seed, "subset": subset, "metrics": metrics, "scores": scores})
                bar.set_postfix(target=name, source=source.name, labels=point.label, seed=seed)
                bar.update(1)
            result.runs[(source.name, point)] = runs
    return result
