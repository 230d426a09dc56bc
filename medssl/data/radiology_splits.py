"""Patient- (or study-) level train / val / test splits for the ``dicom`` and ``nifti`` data sets.

Images of one patient look alike (same anatomy, scanner, often the same study), so an
image-level split puts near-copies of test images in the training set. Two ways to
split, both by *group* (patient or study pseudonym, :mod:`medssl.data.pseudonym`):

* ``medssl data split ROOT --by patient`` writes a splits file (default
  ``ROOT/splits.json``): ``{format, by, seed, val, test, salt_check, splits: {train:
  [pseudonyms], val: [...], test: [...]}}``; the data set's ``split: train`` reads it.
  The file holds pseudonyms only. ``salt_check`` tells a file made with another salt.
* a ``split`` column in the CSV manifest (the user's own split): accepted only when no
  patient has images in two splits (:func:`check_user_split`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence

from medssl.data.pseudonym import salt_check
from medssl.errors import DataError
from medssl.fileio import PathLike, atomic_write
from medssl.wsi.splits import SPLITS, split_slides

FORMAT = "medssl-radiology-splits/1"
NAME = "splits.json"
UNITS = ("patient", "study")
SHOWN = 5


def write_group_splits(groups: Sequence[str], out: PathLike, by: str, salt: bytes, val: float = 0.1,
                       test: float = 0.1, seed: int = 0, where: str = "") -> Dict[str, Any]:
    """Split the distinct ``groups`` (pseudonyms, one per image) and write the splits file
    ``out`` atomically. Returns the written document."""
    if by not in UNITS:
        raise DataError(f"--by must be one of {', '.join(UNITS)} for radiology data, got {by!r}")
    ids = sorted(set(groups))
    doc = {"format": FORMAT, "by": by, "seed": seed, "val": val, "test": test, "salt_check": salt_check(salt),
           "splits": split_slides(ids, val, test, seed, where=where, unit=by)}
    text = json.dumps(doc, indent=1)
    atomic_write(Path(out), lambda tmp: Path(tmp).write_text(text + "\n"))
    return doc


def read_group_splits(path: PathLike, salt: bytes, root_hint: str) -> Dict[str, Any]:
    """``{"by": unit, "splits": {split: set of pseudonyms}}`` from a splits file."""
    p = Path(path)
    how = f"medssl data split {root_hint} --by patient"
    if not p.is_file():
        raise DataError(f"no splits file {p}: make patient-level splits first ({how}), or give split: all "
                        "(or a CSV manifest with a split column)")
    try:
        doc = json.loads(p.read_text())
        assert doc.get("format") == FORMAT and doc.get("by") in UNITS
        splits = {s: set(map(str, doc["splits"][s])) for s in SPLITS}
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise DataError(f"{p}: not a medssl radiology splits file ({type(exc).__name__}); re-create it with {how}") from exc
    if doc.get("salt_check") != salt_check(salt):
        raise DataError(f"{p} was made with another id salt (MEDSSL_ID_SALT / salt file), so its pseudonyms match no "
                        f"image here; use the salt it was made with, or re-create it with {how}")
    return {"by": doc["by"], "splits": splits}


def check_user_split(groups: Sequence[str], splits: Sequence[str], paths: Sequence[Path], unit: str,
                     source: str) -> None:
    """DataError when a ``unit`` (patient) has images in more than one of the user's
    ``splits`` (one entry per image, like ``groups`` and ``paths``)."""
    seen: Dict[str, Dict[str, List[Path]]] = defaultdict(lambda: defaultdict(list))
    for g, s, p in zip(groups, splits, paths):
        seen[g][s].append(p)
    bad = {g: d for g, d in seen.items() if len(d) > 1}
    if not bad:
        return
    examples = []
    for g in sorted(bad)[:SHOWN]:
        where = ", ".join(f"{s}: {len(v)} ({v[0].name})" for s, v in sorted(bad[g].items()))
        examples.append(f"{g} [{where}]")
    raise DataError(
        f"{source}: {len(bad)} of {len(seen)} {unit}s have images in more than one split, so the test set would "
        f"hold {unit}s the model trained on: {'; '.join(examples)}{' ...' if len(bad) > SHOWN else ''}. "
        f"Fix: move each listed {unit}'s rows into one split, or drop the split column and make {unit}-level "
        f"splits with `medssl data split ROOT --by {unit}` (the {unit} pseudonyms are keyed with your id salt)")
