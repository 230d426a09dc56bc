"""``medssl data split DIR --by patient|study`` for the ``dicom`` and ``nifti`` data sets
(``--by slide`` for tilings stays in :mod:`medssl.wsi.commands`, which calls this)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medssl.data.open import open_dataset, resolve_config
from medssl.data.pseudonym import load_salt
from medssl.data.radiology_splits import NAME, write_group_splits
from medssl.errors import DataError

RADIOLOGY = ("dicom", "nifti")


def run_group_split(args: argparse.Namespace) -> int:
    """Open ``args.dir`` whole, split its patients (or studies) and write the splits file."""
    cfg = resolve_config(args.dir)
    name = str(cfg["name"]).lower()
    if name not in RADIOLOGY:
        raise DataError(f"{args.dir}: --by {args.by} splits DICOM / NIfTI data, but this is a {name!r} data set "
                        "(tilings: --by slide; image folders: a CSV with a split column)")
    cfg.pop("split", None)
    cfg.setdefault("image_size", None)
    cfg["image_size"] = cfg["image_size"] or 1  # a split reads headers only: mixed native sizes do not matter here
    ds: Any = open_dataset(cfg, split="all")
    if ds.has_user_split:
        own = (f"{ds.csv_path} has a split column" if ds.csv_path is not None
               else f"{args.dir} has train / val / test folders")
        raise DataError(f"{own}, which the data set uses as your own split (checked: no patient in two splits); "
                        f"keep it, or remove it to use --by {args.by} splits")
    out = Path(args.out) if args.out else ds.default_splits_dir / NAME
    groups = ds.object_groups(args.by)
    doc = write_group_splits(groups, out, args.by, load_salt(cfg.get("salt_file")), val=args.val, test=args.test,
                             seed=args.seed, where=str(args.dir))
    counts = {s: sum(1 for g in groups if g in set(doc["splits"][s])) for s in ("train", "val", "test")}
    unit = "objects" if name == "dicom" else "volumes"
    parts = ", ".join(f"{s} {len(doc['splits'][s])} {args.by}(s) ({counts[s]} {unit})" for s in ("train", "val", "test"))
    print(f"{out}: {parts} (seed {args.seed}); it holds salted pseudonyms only")
    if args.out:
        print(f"use it with splits: {out} in the data config")
    return 0
