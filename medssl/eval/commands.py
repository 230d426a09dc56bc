"""``medssl transfer``, ``medssl evaluate``, ``medssl embed`` and ``medssl report``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

from medssl.errors import ConfigError, DataError

# flag attribute -> config key (only flags the user actually gave are applied)
_FLAG_KEYS = {
    "encoder": "encoder", "data": "data", "test_data": "test_data", "split_train": "split_train",
    "split_test": "split_test", "protocol": "protocol", "label_fraction": "label_fraction",
    "seeds": "seeds", "seed": "seed", "out": "out", "device": "device", "batch_size": "batch_size",
    "allow_class_name_mismatch": "allow_class_name_mismatch", "threads": "threads",
    "allow_overlap": "allow_overlap",
}  # fmt: skip


def _flag_mapping(args: argparse.Namespace) -> Dict[str, Any]:
    out = {key: getattr(args, attr) for attr, key in _FLAG_KEYS.items() if getattr(args, attr, None) is not None}
    if getattr(args, "no_plots", False):
        out["report"] = {"plots": False}
    return _panel_flags(args, out)


def _take_overrides(args: argparse.Namespace, values: List[str]) -> List[str]:
    """``values`` of a several-valued flag without the ``key=value`` overrides it swallowed
    (``--label-fraction 0.1 protocol=knn``), which go back to ``args.overrides``."""
    keep = []
    for v in values:
        if "=" in v and not v.startswith("-") and not Path(v).exists():
            args.overrides.append(v)
        else:
            keep.append(v)
    return keep


def _numbers(flag: str, values: List[str], kind: type) -> List[Any]:
    out = []
    for v in values:
        try:
            out.append(kind(v))
        except ValueError:
            raise ConfigError(f"{flag}: {v!r} is not {'a number' if kind is float else 'a whole number'}") from None
    return out


def _panel_flags(args: argparse.Namespace, out: Dict[str, Any]) -> Dict[str, Any]:
    """Several --data / --label-fraction values, --labels-per-class, --baseline: panel keys."""
    if not isinstance(getattr(args, "overrides", None), list):
        args.overrides = list(getattr(args, "overrides", None) or [])
    if isinstance(out.get("data"), list):
        data = _take_overrides(args, out.pop("data"))
        out.update({"targets": data} if len(data) > 1 else {"data": data[0]} if data else {})
    counts = _numbers("--labels-per-class", _take_overrides(args, getattr(args, "labels_per_class", None) or []), int)
    if isinstance(out.get("label_fraction"), list):
        fractions = _numbers("--label-fraction", _take_overrides(args, out.pop("label_fraction")), float)
        if len(fractions) > 1 or counts:
            out["label_fractions"] = fractions
        elif fractions:
            out["label_fraction"] = fractions[0]
    if counts:
        out["labels_per_class"] = counts
    baselines = _take_overrides(args, getattr(args, "baseline", None) or [])
    if baselines:
        out["baselines"] = baselines
    return out


def _track(cfg: Any, out_dir: Path, report: Dict[str, Any]) -> None:
    """Log the report to the MLflow run of the pretraining run behind ``cfg.encoder``, when
    that run was tracked (medssl.tracking); nothing otherwise."""
    from medssl.tracking import log_transfer_report

    encoder = getattr(cfg, "encoder", None)
    run_id = log_transfer_report(encoder, out_dir, report) if isinstance(encoder, str) else None
    if run_id is not None:
        print(f"  mlflow: logged to the pretraining run {run_id}")


def _run(cfg: Any, progress: bool) -> None:
    """One transfer run, or a label-efficiency panel (medssl/eval/panel.py); prints the summary."""
    if not cfg.is_panel():
        from medssl.eval.transfer import run_transfer

        result = run_transfer(cfg, progress=progress)
        _print_summary(result)
        _track(cfg, result.out_dir, result.report)
        return
    from medssl.eval.panel import run_panel

    res = run_panel(cfg, progress=progress)
    _track(cfg, res.out_dir, res.report)
    rows = res.report["rows"]
    print(f"medssl: {cfg.protocol} panel, {len(res.report['targets'])} target(s), seeds {cfg.seed_list()} "
          "(AUC, mean over seeds and 95 % CI):")
    titles = {s["name"]: s["title"] for s in res.report["sources"]}
    for r in sorted(rows, key=lambda r: (r["target"], list(titles).index(r["source"]), r["n_labels"])):
        a = r["metrics"]["auc"]
        ci = a.get("ci") or [None, None]
        val = "n/a (undefined)" if a["mean"] is None else f"{a['mean']:.4f}" + (
            f" ({ci[0]:.4f}-{ci[1]:.4f})" if ci[0] is not None else "")
        print(f"  {r['target']:<16} {titles[r['source']]:<36} {r['point']['label']:>13} "
              f"({r['n_labels']:g} labels): {val}")
    for w in res.report["warnings"]:
        print(f"  warning: {w}", file=sys.stderr)
    print(f"  report: {res.out_dir / 'report.md'} (and report.json, predictions.csv, label_efficiency.png)")
    if res.failed:
        raise DataError("; ".join(f"target {f['target']!r} ({f['data']}) failed: {f['error']}" for f in res.failed)
                        + f". The other targets were scored and written to {res.out_dir}")


def _print_summary(result: Any) -> None:
    from medssl.eval.report import format_mean_sd

    rep = result.report
    agg = rep["aggregate"]
    p = rep["protocol"]
    print(f"medssl: {p['name']} at {100 * p['label_fraction']:g} % labels, seeds {p['seeds']}:")
    if p.get("seeds_requested") and len(p["seeds_requested"]) != len(p["seeds"]):
        print(f"  note: {len(p['seeds_requested'])} seeds asked for, {len(p['seeds'])} run: the seeds would be "
              "identical copies here (report.md says why)")
    for key in ("auc", "accuracy", "balanced_accuracy"):
        e = agg[key]
        ci = f", 95 % CI {e['ci'][0]:.3f} – {e['ci'][1]:.3f}" if e.get("ci") else ""
        print(f"  {key:<18}: {format_mean_sd(e)}{ci}")
    for w in rep["warnings"]:
        print(f"  warning: {w}", file=sys.stderr)
    print(f"  report: {result.out_dir / 'report.md'} (and report.json, plots)")


def _transfer(args: argparse.Namespace) -> int:
    from medssl.config import to_dict
    from medssl.eval.config import load_transfer_config

    mapping = _flag_mapping(args)  # first: it hands back overrides a several-valued flag swallowed
    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `medssl transfer key=value --encoder ...`: no YAML given
        config = None
    cfg = load_transfer_config(config, mapping, overrides) if (config or mapping or overrides) else None
    if cfg is None:
        raise ConfigError("medssl transfer needs a YAML config or --encoder and --data (see `medssl transfer -h`)")
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    _check_run_config(cfg.encoder)
    _run(cfg, progress=not args.no_progress)
    return 0


def _check_run_config(encoder: Any) -> None:
    """An encoder given as a run directory: its config.yaml must be whole (refused when torn
    or cut, :func:`medssl.train.run_dir.read_run_config`); the encoder file itself is not checked."""
    path = Path(str(encoder))
    if path.is_dir() and (path / "config.yaml").exists():
        from medssl.train.run_dir import read_run_config

        read_run_config(path)


def evaluation_data(run_dir: Path) -> Dict[str, Any]:
    """The labelled dataset mapping of a pretraining run (its ``val_data``, else ``data``),
    without its split; DataError naming the run when neither carries labels."""
    from medssl.data.open import open_dataset
    from medssl.train.run_dir import read_run_config

    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        from medssl.text import looked_at

        raise DataError(f"{run_dir} has no config.yaml (looked at {looked_at(cfg_file)}): pass a run directory "
                        "written by `medssl pretrain`")
    raw = read_run_config(run_dir)
    tried: List[str] = []
    for key in ("val_data", "data"):
        spec = raw.get(key)
        if not isinstance(spec, dict):
            continue
        spec = {k: v for k, v in spec.items() if k != "split"}
        try:
            ds = open_dataset(spec, split="train")
        except (DataError, ConfigError) as exc:
            tried.append(f"{key} ({spec.get('name')}): {exc}")
            continue
        if ds.task is not None:
            return spec
        tried.append(f"{key} ({spec.get('name')}): its train split is unlabelled")
    raise DataError(
        f"the data of run {run_dir} has no labelled train split, so it cannot be evaluated on its own dataset "
        f"({'; '.join(tried) or 'no data mapping in config.yaml'}). Evaluate it on a labelled target instead: "
        f"medssl transfer --encoder {run_dir} --data LABELLED_DATA"
    )


def _evaluate(args: argparse.Namespace) -> int:
    from medssl.eval.config import load_transfer_config

    run_dir = Path(args.run_dir)
    spec = evaluation_data(run_dir)
    mapping = _flag_mapping(args)
    mapping.update({"encoder": str(run_dir), "data": spec})
    mapping.setdefault("out", str(run_dir / f"eval_{mapping.get('protocol', 'linear')}"))
    cfg = load_transfer_config(None, mapping, args.overrides)
    _run(cfg, progress=not args.no_progress)
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from medssl.data.open import open_dataset
    from medssl.eval.features import embed
    from medssl.device import resolve_device
    from medssl.eval.transfer import encoder_file
    from medssl.fileio import atomic_write, check_output_path
    from medssl.provenance import sha256_file
    from medssl.models.export import load_encoder
    from medssl.threads import thread_budget

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: embeddings are written as .npz; give a file name ending in .npz")
    check_output_path(out, "--out", kind="file")
    device = resolve_device(args.device or "auto")
    budget = thread_budget(args.threads, key="--threads") if device.type == "cpu" else contextlib.nullcontext()
    _check_run_config(args.encoder)
    with budget:
        model, preprocess = load_encoder(args.encoder, device=device)
        ds = open_dataset(args.data, split=args.split)
        feats, labels = embed(model, ds, preprocess, batch_size=args.batch_size or 256, device=device,
                              progress=not args.no_progress, stage=f"embed {ds.split}")
    arrays = {"features": feats, "labels": labels, "split": np.asarray(ds.split),
              "encoder_sha256": np.asarray(sha256_file(encoder_file(args.encoder)))}
    def save(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object, so np.savez does not append ".npz" to the temporary name
            np.savez(fh, **arrays)

    atomic_write(out, save, "--out", "free some space or choose a writable location, then run the command again")
    print(f"medssl: wrote {tuple(feats.shape)} features and labels of {ds.describe()['dataset']} "
          f"split {ds.split!r} to {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from medssl.eval.compare import compare_panels, is_panel_report
    from medssl.eval.report import compare_reports
    from medssl.fileio import atomic_write_text, check_output_path

    if args.out:  # checked before any report is read; missing folders above it are created
        check_output_path(args.out, "--out", kind="file")
    paths = [Path(p) for p in args.dirs]
    if any(is_panel_report(p) for p in paths):  # label-efficiency panels (docs/transfer.md)
        figure = Path(args.figure) if args.figure else (Path(args.out).with_suffix(".png") if args.out else None)
        text, issues, result = compare_panels(paths, figure)
        if args.out:
            atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(result, indent=1), "--out")
    else:
        text, issues = compare_reports(paths)
    for issue in issues:
        print(f"medssl report: warning: {issue}", file=sys.stderr)
    if args.out:
        atomic_write_text(args.out, text, "--out")
        print(f"medssl: wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


_THREADS_HELP = ("torch CPU threads: a number or 'auto' (default: OMP_NUM_THREADS if set, else the "
                 "cores this process may use; docs/transfer.md)")


def _threads_flag(text: str) -> Any:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}")
    return n


_DEVICE_HELP = "auto (a GPU when there is one, else the CPU), cpu or cuda (default auto)"


def _add_eval_flags(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--protocol", choices=("linear", "knn", "finetune"), help="evaluation protocol (default linear)")
    p.add_argument("--label-fraction", nargs="+", metavar="F",
                   help="fraction(s) of the train labels to use, in (0, 1] (default 1.0); several make a "
                        "label-efficiency panel (docs/transfer.md)")
    p.add_argument("--labels-per-class", nargs="+", metavar="K",
                   help="labelled images per class, one or more: a panel point each (default: none)")
    p.add_argument("--baseline", nargs="+", metavar="{random,pixels}",
                   help="also probe a random-init encoder of the same architecture and/or raw pixels + colour "
                        "histogram on the same subsets, in a panel (default: none)")
    p.add_argument("--seeds", type=int, help="number of label-subset / probe seeds (default 3)")
    p.add_argument("--seed", type=int, help="first seed (default 0)")
    p.add_argument("--split-train", help="labelled split to train the probe on (default train)")
    p.add_argument("--split-test", help="split to score (default test)")
    p.add_argument("--out", help=f"output directory (default {out_default})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help=f"where to run: {_DEVICE_HELP}")
    p.add_argument("--batch-size", type=int, help="batch size for feature extraction (default 256)")
    p.add_argument("--threads", type=_threads_flag, help=_THREADS_HELP)
    p.add_argument("--allow-overlap", action="store_true", default=None,
                   help="accept train and test sets that share images, files, slides or patients (refused by "
                        "default); the report then says so")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted config overrides")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    t = subparsers.add_parser(
        "transfer", help="linear probe / kNN / fine-tune an encoder on a labelled target",
        description="Evaluate an exported encoder on a labelled dataset: `medssl transfer --encoder runs/x "
        "--data data/pcam --label-fraction 0.02` or `medssl transfer configs/transfer/stl10_to_pcam.yaml "
        "key=value`. Writes report.json, report.md and plots to --out (docs/transfer.md).",
    )
    t.add_argument("config", nargs="?", help="transfer YAML config (configs/transfer/); optional with flags")
    t.add_argument("--encoder", help="run directory or encoder.safetensors (default: the YAML's encoder; one of "
                   "the two is required)")
    t.add_argument("--data", nargs="+", help="labelled dataset(s): a path (format auto-detected) or a dataset YAML; "
                   "several make a panel, each target scored on its own (default: the YAML's data or targets; "
                   "one of the two is required)")
    t.add_argument("--test-data", help="a separate labelled test dataset (default: --data)")
    t.add_argument("--allow-class-name-mismatch", action="store_true", default=None,
                   help="accept a --test-data whose class names differ from --data's (same classes under "
                        "other names); the report uses the train names and says so")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    _add_eval_flags(t, "runs/transfer, or the YAML's out")
    t.set_defaults(func=_transfer)

    e = subparsers.add_parser(
        "evaluate", help="evaluate a pretraining run on its own dataset",
        description="Evaluate RUN_DIR's encoder on the labelled dataset of its config.yaml (val_data, else "
        "data): train split -> test split. Output goes to RUN_DIR/eval_<protocol> unless --out is given.",
    )
    e.add_argument("run_dir", help="a run directory written by `medssl pretrain`")
    _add_eval_flags(e, "RUN_DIR/eval_<protocol>")
    e.set_defaults(func=_evaluate, encoder=None, data=None, test_data=None)

    m = subparsers.add_parser("embed", help="write embeddings of a dataset with an exported encoder",
                              description="Write features [N, F] and labels of one split to an .npz.")
    m.add_argument("--encoder", required=True, help="run directory or encoder.safetensors")
    m.add_argument("--data", required=True, help="dataset path or YAML (format auto-detected)")
    m.add_argument("--split", default=None, help="split to embed (default: the dataset's default)")
    m.add_argument("--out", required=True, help="output .npz (keys features, labels, encoder_sha256, split)")
    m.add_argument("--batch-size", type=int, help="images per forward pass (default 256)")
    m.add_argument("--threads", type=_threads_flag, default="auto", help=_THREADS_HELP)
    m.add_argument("--device", choices=("auto", "cpu", "cuda"), help=f"where to run: {_DEVICE_HELP}")
    m.add_argument("--no-progress", action="store_true", help="no progress display")
    m.set_defaults(func=_embed)

    r = subparsers.add_parser("report", help="compare evaluation reports side by side",
                              description="A Markdown table of the headline metrics of several evaluation "
                              "directories; differing protocols / label fractions are flagged. On label-efficiency "
                              "panels: each against the first, paired differences with CIs, labels saved and "
                              "overlaid curves (docs/transfer.md).")
    r.add_argument("dirs", nargs="+", help="evaluation directories (each with report.json)")
    r.add_argument("--out", help="write the table to this file (default: print it; panels: also OUT.json and "
                   "OUT.png)")
    r.add_argument("--figure", help="panels: write the overlaid label-efficiency curves here (default: OUT.png "
                   "when --out is given, else none)")
    r.set_defaults(func=_report)
