"""Evaluation reports: ``report.json`` (everything), ``report.md`` (a table a clinician can
paste) and side-by-side comparison of several evaluation directories.

The headline table shows the mean over seeds, its sample sd and the 95 % interval of that
mean: a stratified percentile bootstrap of the test set pooled over seeds (each resample
scores every seed on the same items; :mod:`medssl.eval.seeds`). The per-seed table keeps
each seed's own interval.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from medssl.provenance import package_versions
from medssl.errors import DataError
from medssl.eval import slide_level
from medssl.eval.seeds import format_mean_sd
from medssl.text import md_cell, name_list

FORMAT = "medssl-eval-report/1"
METRIC_LABELS = {
    "auc": "AUC (ROC)",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro-F1",
    "ece": "ECE (15 bins, lower is better)",
    "brier": "Brier score (lower is better)",
}
COMPARE_METRICS = ("auc", "accuracy", "balanced_accuracy", "macro_f1", "ece")


def versions() -> Dict[str, str]:
    """Versions of medssl and the libraries that shape the numbers."""
    return package_versions(("medssl", "torch", "timm", "numpy"))


def _protocol_summary(cfg: Any, per_seed: List[Dict[str, Any]]) -> Dict[str, Any]:
    first = dict(per_seed[0]["metrics"].get("protocol", {}))
    first.pop("selection_table", None)
    out: Dict[str, Any] = {
        "name": cfg.protocol,
        "label_fraction": cfg.label_fraction,
        "min_per_class": cfg.min_per_class,
        "seeds": [r["seed"] for r in per_seed],
        "seeds_requested": cfg.seed_list(),
        "split_train": cfg.split_train,
        "split_test": cfg.split_test,
        "details": first,
    }
    if cfg.protocol == "linear":
        out["weight_decay_per_seed"] = [r["metrics"]["protocol"].get("weight_decay") for r in per_seed]
    return out


def build_report(cfg: Any, per_seed: List[Dict[str, Any]], aggregate: Dict[str, Any], warnings: List[str],
                 encoder: Dict[str, Any], data: Dict[str, Any], plots: Dict[str, str],
                 cache_hits: Dict[str, bool], class_names_source: Optional[Dict[str, Any]] = None
                 ) -> Dict[str, Any]:
    """The ``report.json`` dict of one transfer run (see docs/transfer.md for its keys)."""
    from medssl.config import to_dict

    m0 = per_seed[0]["metrics"]
    seed_warnings = [f"seed {r['seed']}: {w}" for r in per_seed for w in r["metrics"].get("warnings", [])]
    notes = sorted({n for r in per_seed for n in r["subset"].get("notes", [])})
    report = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "protocol": _protocol_summary(cfg, per_seed),
        "task": m0["task"],
        "num_classes": m0["num_classes"],
        "class_names": m0["class_names"],
        "class_names_source": class_names_source or {"from": "train", "agree": True},
        "n_test": m0["n"],
        "test_class_counts": m0["class_counts"],
        "ci": {"source": "pooled_over_seeds", "seed": per_seed[0]["seed"],  # seed: the figures' seed
               "method": "stratified percentile bootstrap of the test set pooled over seeds (each resample "
                         "scores every seed on the same test items; the metric is averaged over seeds)",
               "aggregate": "aggregate.<metric>.ci", "per_seed": "per_seed[i].metrics.<metric>_ci",
               "level": 1.0 - float(m0.get("bootstrap", {}).get("alpha", 0.05)),
               "n_boot": m0.get("bootstrap", {}).get("n_boot")},
        "aggregate": aggregate,
        "per_seed": per_seed,
        "subset_files": [r["subset"]["file"] for r in per_seed],
        "notes": notes,
        "warnings": list(dict.fromkeys(warnings + seed_warnings)),
        "encoder": encoder,
        "data": data,
        "feature_cache": cache_hits,
        "plots": plots,
        "config": to_dict(cfg),
    }
    slides = slide_level.summarise(per_seed)
    if slides is not None:  # the test set is tiles of whole slides
        report["slide_level"] = slides
    report["protocol"]["text"] = protocol_text(report)
    return report


def protocol_text(report: Mapping[str, Any]) -> str:
    """The protocol in one paragraph (what was trained on what, how, and how it was scored)."""
    p = report["protocol"]
    d = p["details"]
    enc = report["encoder"]["encoder_json"]
    train = report["data"]["train"]["describe"]
    test = report["data"]["test"]["describe"]
    subset_sizes = sorted({r["subset"]["size"] for r in report["per_seed"]})
    sizes = "/".join(str(s) for s in subset_sizes)
    if p["name"] == "linear":
        wd = d.get("weight_decay_grid")
        how = (f"Linear probe: logistic regression fit with L-BFGS (at most {d.get('max_iter')} iterations) on "
               f"standardised frozen encoder features; weight decay "
               + (f"chosen per seed from {wd} by the lowest loss on a stratified held-out "
                  f"{int(100 * (d.get('val_fraction') or 0.2))} % of the label subset "
                  f"(chosen: {p.get('weight_decay_per_seed')})" if d.get("selection") != "fixed"
                  else f"fixed at {d.get('weight_decay')}") + ".")
    elif p["name"] == "knn":
        how = (f"Weighted kNN on frozen encoder features: cosine similarity, k = {d.get('k')}, neighbours weighted "
               f"by exp(similarity / {d.get('temperature')}), class score = weight share.")
    else:
        how = (f"Fine-tuning: the encoder and a new linear head trained end to end with AdamW (encoder lr "
               f"{d.get('lr_encoder')}, head lr {d.get('lr_head')}, weight decay {d.get('weight_decay')}) for "
               f"{d.get('epochs')} epochs, batch {d.get('batch_size')}, '{d.get('augment')}' training augmentation; "
               f"normalisation statistics kept from pretraining; head initialised "
               + ("as the linear probe of the frozen features (LP-FT)." if d.get("head_init") == "probe"
                  else "at zero."))
    ci = report["ci"]
    return (
        f"Encoder {enc.get('backbone')} ({enc.get('in_chans')} channels, {enc.get('image_size')} px input; images "
        f"resized to that size, grayscale repeated to 3 channels when needed). {how} Labels used: a stratified "
        f"{100 * p['label_fraction']:g} % of the labelled '{p['split_train']}' split of {train.get('dataset')} "
        f"({train.get('length')} items; {sizes} items per seed, at least {p['min_per_class']} per class), "
        f"seeds {p['seeds']}. Scored on all {report['n_test']} items of the '{p['split_test']}' split of "
        f"{test.get('dataset')}. Mean +- sd are across seeds (sample sd); the 95 % CI of the mean is a "
        f"{ci['method']} ({ci['n_boot']} resamples); each seed's own CI is in the per-seed table."
    )


def _fmt(v: Optional[float], digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci_text(ci: Any) -> str:
    return f"{_fmt(ci[0])} – {_fmt(ci[1])}" if ci and ci[0] is not None else "—"


def _per_seed_lines(report: Mapping[str, Any]) -> List[str]:
    """One row per seed: its label count, AUC and accuracy with the seed's own 95 % CI."""
    lines = ["Per seed (each with its own 95 % CI, a stratified bootstrap of its test predictions):", "",
             "| Seed | Labels used | AUC | AUC 95 % CI | Accuracy | Accuracy 95 % CI |", "|---|---|---|---|---|---|"]
    for r in report["per_seed"]:
        m = r["metrics"]
        lines.append(f"| {r['seed']} | {r['subset'].get('size')} | {_fmt(m.get('auc'))} | {_ci_text(m.get('auc_ci'))} "
                     f"| {_fmt(m.get('accuracy'))} | {_ci_text(m.get('accuracy_ci'))} |")
    return lines + [""]


def _names_origin(report: Mapping[str, Any]) -> str:
    src = report.get("class_names_source") or {}
    if src.get("agree", True):
        return "class names of the train data, which the test data shares"
    return (f"class names of the train data; the test data calls them {name_list(src.get('test', []))}, "
            "accepted by allow_class_name_mismatch")


def _ci_header(n_seeds: int) -> str:
    if n_seeds == 1:
        return "95 % CI (test-set bootstrap)"
    return f"95 % CI of the mean (test-set bootstrap pooled over the {n_seeds} seeds)"


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: headline table, per-class table, protocol paragraph, notes, plots."""
    p = report["protocol"]
    agg = report["aggregate"]
    seed0 = report["ci"]["seed"]
    lines = [
        f"# Transfer evaluation: {p['name']}, {100 * p['label_fraction']:g} % labels",
        "",
        f"Task: {report['task']} ({report['num_classes']} classes: {name_list(report['class_names'])}; "
        f"{_names_origin(report)}); test items: {report['n_test']}; seeds: {', '.join(str(s) for s in p['seeds'])}.",
        "",
        f"| Metric | Mean ± SD across seeds | {_ci_header(len(p['seeds']))} |",
        "|---|---|---|",
    ]
    for key, label in METRIC_LABELS.items():
        lines.append(f"| {label} | {format_mean_sd(agg[key])} | {_ci_text(agg[key].get('ci'))} |")
    lines += [""] + _per_seed_lines(report)
    lines += ["Per class (one-vs-rest on the predicted class; mean ± SD across seeds):", "",
              "| Class | Test n | Sensitivity | Specificity | AUC |", "|---|---|---|---|---|"]
    aucs = agg.get("auc_per_class", {})  # binary: the positive class only
    for name, n in zip(report["class_names"], report["test_class_counts"]):
        lines.append(f"| {md_cell(name)} | {n} | {format_mean_sd(agg['sensitivity'][name])} | "
                     f"{format_mean_sd(agg['specificity'][name])} | "
                     f"{format_mean_sd(aucs[name]) if name in aucs else '—'} |")
    lines += [""] + slide_level.markdown_lines(report.get("slide_level"))
    lines += ["## Protocol", "", p["text"], ""]
    if report["notes"] or report["warnings"]:
        lines += ["## Notes and warnings", ""]
        lines += [f"- {n}" for n in report["notes"]] + [f"- **warning:** {w}" for w in report["warnings"]]
        lines.append("")
    if report["plots"]:
        lines += ["## Figures", "", f"Figures show seed {seed0}; the tables above give the mean across seeds.", ""]
        lines += [f"![{k}]({v})" for k, v in report["plots"].items()] + [""]
    if report.get("predictions"):
        from medssl.eval.predictions import auc_recipe

        lines += ["## Per-image predictions", "",
                  f"`{report['predictions']}` holds one row per seed and test image: its index in the test "
                  "split, true and predicted class and every class score (docs/transfer.md lists the columns). "
                  f"To recompute the AUC of seed {seed0} with scikit-learn, in this directory:", "",
                  "```python", auc_recipe(report["task"], report["class_names"], seed0, report["predictions"]),
                  "```", ""]
    enc = report["encoder"]
    lines += ["## Provenance", "",
              f"- encoder: `{enc['path']}` (sha256 `{enc['sha256'][:16]}…`)",
              f"- data: train `{report['data']['train']['config']}`, test `{report['data']['test']['config']}`",
              f"- versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}; {report['created']}", ""]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: Path) -> Tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out``."""
    out = Path(out)
    js, md = out / "report.json", out / "report.md"
    from medssl.fileio import atomic_write_text  # a full disk: one line, never a torn report

    atomic_write_text(js, json.dumps(report, indent=1, default=str), "the report")
    atomic_write_text(md, render_markdown(report), "the report")
    return js, md


def load_report(path: Path) -> Dict[str, Any]:
    """A ``report.json`` from an evaluation directory (or the file itself)."""
    p = Path(path)
    f = p / "report.json" if p.is_dir() else p
    if not f.is_file():
        raise DataError(f"no report.json in {p}: pass a directory written by `medssl transfer` or `medssl evaluate`")
    try:
        body = json.loads(f.read_bytes().decode("utf-8"))
    except (ValueError, OSError, RecursionError) as exc:
        raise DataError(f"{f} is not valid JSON ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                        "re-run the evaluation") from exc
    return check_report_body(body, f)


# What compare_reports reads, as (dotted key, type): a report missing one is refused by name.
_REPORT_FIELDS = (("protocol", dict), ("protocol.name", str), ("protocol.label_fraction", (int, float)),
                  ("protocol.split_test", str), ("protocol.seeds", list), ("data.test.config", object),
                  ("encoder.encoder_json", dict), ("encoder.sha256", str), ("aggregate", dict))


def check_report_body(body: Any, f: Path) -> Dict[str, Any]:
    """``body`` if it is a medssl report holding every field the comparison reads (each
    aggregate metric a ``{mean, sd}`` object), else a DataError naming ``f`` and the field."""
    if not isinstance(body, dict):
        raise DataError(f"{f} holds a JSON {type(body).__name__}, not a medssl evaluation report (a JSON object); "
                        "re-run the evaluation")
    if body.get("format") != FORMAT:
        raise DataError(f"{f} is not a medssl evaluation report (format {body.get('format')!r}, expected {FORMAT!r})")
    wanted = list(_REPORT_FIELDS) + [(f"aggregate.{k}", dict) for k in COMPARE_METRICS]
    for dotted, kind in wanted:
        node: Any = body
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or not isinstance(node, kind) or isinstance(node, bool):
            raise DataError(f"{f} has no valid '{dotted}' (the report is incomplete or was edited); "
                            "re-run the evaluation that wrote it")
    return body


def compare_reports(paths: Sequence[Path]) -> Tuple[str, List[str]]:
    """A Markdown table of the headline metrics of several evaluation directories, and the
    list of mismatches (protocol, label fraction, test data) that make rows not comparable;
    mismatching cells are marked with ⚠ and explained above the table."""
    reports = [(Path(p), load_report(Path(p))) for p in paths]
    keys = {
        "protocol": lambda r: r["protocol"]["name"],
        "label fraction": lambda r: r["protocol"]["label_fraction"],
        "test data": lambda r: json.dumps(r["data"]["test"]["config"], sort_keys=True),
        "test split": lambda r: r["protocol"]["split_test"],
    }
    issues = []
    differs = {}
    for what, get in keys.items():
        values = [get(r) for _, r in reports]
        differs[what] = len(set(map(str, values))) > 1
        if differs[what]:
            issues.append(f"{what} differs between reports ({', '.join(str(v) for v in values)}): "
                          "their numbers are not directly comparable")

    def mark(text: str, what: str) -> str:
        return f"⚠ {text}" if differs[what] else text

    head = ["Evaluation", "Encoder", "Protocol", "Label fraction", "Seeds"] + [METRIC_LABELS[k].split(" (")[0]
                                                                              for k in COMPARE_METRICS]
    lines = []
    if issues:
        lines += ["**Warning: these evaluations differ in setup, compare with care.**", ""]
        lines += [f"- {i}" for i in issues] + [""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path, r in reports:
        p = r["protocol"]
        row = [path.name or str(path), f"{r['encoder']['encoder_json'].get('backbone')} "
               f"(`{r['encoder']['sha256'][:8]}`)", mark(p["name"], "protocol"),
               mark(f"{100 * p['label_fraction']:g} %", "label fraction"), str(len(p["seeds"]))]
        row += [format_mean_sd(r["aggregate"][k]) for k in COMPARE_METRICS]
        lines.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    lines += ["", "Metrics: mean ± sample sd across seeds (n = seeds where the metric is defined). "
              "Each evaluation directory holds predictions.csv (per seed and test image); its report.md "
              "shows how to recompute the AUC from it with scikit-learn."]
    return "\n".join(lines) + "\n", issues
