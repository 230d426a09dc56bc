"""CSV manifests of radiology files: ``path`` plus optional ``label``, ``split``,
``patient`` and ``study`` columns (used by the ``dicom`` and ``nifti`` data sets).

Paths are relative to ``root`` when given, else to the CSV's folder; a path that leaves
it is refused unless ``allow_outside_root``. Labels are class names or integers
``0..K-1``; class names, when not given, are the sorted distinct labels of the *whole*
CSV so every split shares one index. ``patient`` / ``study`` cells override the ids the
files carry (they are pseudonymised like those, never written as given).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from medssl.data.folder import resolve_csv_row
from medssl.errors import DataError

COLUMNS = ("path", "label", "split", "patient", "study")
_INT = re.compile(r"^-?\d+$")
_SPLIT_ALIASES = {"valid": "val", "validation": "val"}


def norm_split(name: str) -> str:
    """``valid`` / ``validation`` -> ``val``; lower case, stripped."""
    key = str(name).strip().lower()
    return _SPLIT_ALIASES.get(key, key)


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    line: int
    label: str = ""
    split: str = ""
    patient: str = ""
    study: str = ""


def read_manifest(csv_path: Path, root: Optional[Path], allow_outside_root: bool) -> Tuple[List[ManifestRow], List[str], Path]:
    """``(rows, columns, the CSV found)`` of a manifest (``csv_path`` may be relative to ``root``); DataError naming the file and line for bad input."""
    if not csv_path.is_file() and root is not None and (root / csv_path).is_file():
        csv_path = root / csv_path
    if not csv_path.is_file():
        raise DataError(f"manifest CSV {csv_path} not found")
    base = root if root is not None else csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            raw = [({(k or "").strip(): (v or "").strip() for k, v in r.items() if k is not None}, reader.line_num)
                   for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read the CSV: {exc}") from exc
    if "path" not in columns:
        raise DataError(f"{csv_path}: needs a 'path' column (optional: {', '.join(COLUMNS[1:])}); found columns {columns}")
    if not raw:
        raise DataError(f"{csv_path}: the CSV has no data rows")
    rows = []
    for r, ln in raw:
        full = resolve_csv_row(base, r.get("path", ""), ln, csv_path, allow_outside_root, what="file")
        rows.append(ManifestRow(full, ln, r.get("label", ""), norm_split(r.get("split", "")), r.get("patient", ""),
                                r.get("study", "")))
    return rows, columns, csv_path


def class_index(rows: Sequence[ManifestRow], class_names: Optional[Sequence[str]], csv_path: Path) -> Tuple[np.ndarray, List[str]]:
    """``(labels (N,) int64, class names)`` for every row; every row needs a label."""
    for r in rows:
        if not r.label:
            raise DataError(f"{csv_path} line {r.line}: empty label; every row needs one (or drop the label column)")
    if class_names is not None:
        names = [str(n) for n in class_names]
    else:
        raw = sorted({r.label for r in rows})
        if all(_INT.match(x) for x in raw):
            if min(int(x) for x in raw) < 0:
                raise DataError(f"{csv_path}: integer labels must be >= 0, found {min(int(x) for x in raw)}")
            names = [str(i) for i in range(max(int(x) for x in raw) + 1)]
        else:
            names = raw
    index = {n: i for i, n in enumerate(names)}
    out = []
    for r in rows:
        if r.label in index:
            out.append(index[r.label])
        elif _INT.match(r.label) and 0 <= int(r.label) < len(names):
            out.append(int(r.label))
        else:
            raise DataError(f"{csv_path} line {r.line}: label {r.label!r} is not one of the class names {names}")
    return np.asarray(out, dtype=np.int64), names
