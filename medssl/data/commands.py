"""``medssl data``: ``sample``, ``info`` and ``stats`` sub-commands (logic in sample.py / info.py);
``tile`` and ``split`` for whole-slide images come from :mod:`medssl.wsi.commands`."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from medssl.data.info import channel_stats, check_max_images, default_split, describe_path, images_used
from medssl.data.open import open_dataset, resolve_config
from medssl.data.sample import write_sample
from medssl.text import counts_line


def _run_sample(args: argparse.Namespace) -> int:
    summary = write_sample(args.out_dir, seed=args.seed)
    print(f"wrote the medssl sample (seed {args.seed}) to {args.out_dir}:")
    for fmt, splits in summary.items():
        sizes = ", ".join(f"{split} {sum(c.values())}" for split, c in splits.items())
        print(f"  {fmt}: {sizes}")
    print(f"see {args.out_dir}/README.md for where the pixels come from and how labels are defined")
    return 0


def _print_radiology(r: Dict[str, Any], list_skipped: bool) -> None:
    """The dicom / nifti summary: pseudonymous patients and studies, never their ids; the
    skipped files (the same for every split) are listed when ``list_skipped``."""
    per_p, per_s = r["images_per_patient"], r["images_per_study"]
    print(f"  patients: {r['patients']} (images per patient: min {per_p['min']}, median {per_p['median']:g}, "
          f"max {per_p['max']}); studies: {r['studies']} (images per study: min {per_s['min']}, "
          f"median {per_s['median']:g}, max {per_s['max']})")
    for key in ("modalities", "transfer_syntaxes"):
        if r.get(key):
            print(f"  {key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in r[key].items()))
    if r.get("unreadable"):
        print(f"  skipped {len(r['unreadable'])} file(s): " + ", ".join(f"{k} {v}" for k, v in r["skipped"].items())
              + ("" if list_skipped else " (listed above)"))
        for u in r["unreadable"] if list_skipped else []:
            print(f"    {u['path']}: {u['why']}")


def _print_info(info: Dict[str, Any]) -> None:
    print(f"format: {info['format']}")
    print(f"config: {json.dumps(info['config'])}")
    listed = False
    for split, d in info["splits"].items():
        if "error" in d:
            print(f"split {split}: not available ({d['error']})")
            continue
        counts = counts_line(d["label_counts"])  # a name with a comma is quoted
        print(f"split {split}: {d['length']} images of shape {d['image_shape']}, task {d['task']}")
        print(f"  labels: {counts or 'none'}")
        if "radiology" in d:
            _print_radiology(d["radiology"], list_skipped=not listed)
            listed = listed or bool(d["radiology"].get("unreadable"))
    sample = info.get("embedded_sample")
    for f in info["files"]:
        line = f"file {f['path']}: {f['bytes']} bytes"
        if "md5" in f:
            line += f", md5 {f['md5']}"
        if "matches_official" in f:
            if f["matches_official"]:
                line += " (matches the official file)"
            else:
                line += f" (differs from the official {f['official_md5']}" + (
                    ": expected, see the note below)" if sample else ")")
        print(line)
    if sample and any(f.get("matches_official") is False for f in info["files"]):
        print(f"note: this is medssl's embedded sample ({sample}/README.md), small files in the official "
              "layout written by `medssl data sample`, so its checksums differ from the real dataset's by "
              "design. The real files: docs/data.md.")


def _run_info(args: argparse.Namespace) -> int:
    info = describe_path(args.path, checksum=not args.no_checksum)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    check_max_images(args.max_images)  # before opening anything
    cfg = resolve_config(args.path)
    split = args.split or cfg.get("split") or default_split(str(cfg["name"]).lower())
    ds = open_dataset(cfg, split=split)
    mean, std = channel_stats(ds, max_images=args.max_images, progress=not args.no_progress)
    used = images_used(len(ds), args.max_images)
    if args.json:
        print(json.dumps({"split": ds.split, "images": used, "mean": mean, "std": std}))
        return 0
    print(f"# per-channel statistics (0..1 scale) of {used} of {len(ds)} images, {cfg['name']} split {ds.split or 'all'}")
    print(f"mean: [{', '.join(f'{v:.4f}' for v in mean)}]")
    print(f"std: [{', '.join(f'{v:.4f}' for v in std)}]")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``medssl data`` and its sub-commands on the top-level subparsers."""
    data = subparsers.add_parser("data", help="inspect datasets and write the embedded sample")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda _args: (data.print_help(), 0)[1])

    p = sub.add_parser("sample", help="write small datasets in the PCAM/MedMNIST/STL-10/folder formats from real images")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the sample into (created if absent)")
    p.add_argument("--seed", type=int, default=0, help="seed for tile orientations and crops (default 0)")
    p.set_defaults(func=_run_sample)

    p = sub.add_parser("info", help="format, splits, sizes, label counts and md5 of a dataset")
    p.add_argument("path", metavar="PATH_OR_CONFIG", help="a dataset file or folder, or a YAML config with a data: section")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-checksum", action="store_true", help="skip the md5 of each file (slow for large files)")
    p.set_defaults(func=_run_info)

    p = sub.add_parser("stats", help="per-channel mean/std (0..1 scale) for normalisation")
    p.add_argument("path", metavar="PATH_OR_CONFIG", help="a dataset file or folder, or a YAML config with a data: section")
    p.add_argument("--split", default=None, help="split to measure (default: train where the format has splits)")
    p.add_argument("--max-images", type=int, default=10000, help="evenly spaced images to use; 0 = all (default 10000)")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML-ready lines")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.set_defaults(func=_run_stats)

    from medssl.wsi.commands import add_parsers as add_wsi_parsers

    add_wsi_parsers(sub)
