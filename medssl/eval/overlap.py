"""Whether the images a probe is trained on and the images it is scored on overlap.

A probe scored on the images it was fitted to reports memorisation, not transfer:
``--split-train test --split-test test`` printed a fine AUC with exit status 0. The two
sets are compared at every level a dataset exposes: the whole split (the same files and
the same split name, however the paths were spelled), single image files (folder and CSV
datasets), whole-slide images (tile datasets: ``slide_names``) and patients (DICOM /
NIfTI ``patient_names`` pseudonyms, or ``patient_ids``). :func:`overlap` describes what is shared, or returns None.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, List, Optional, Set


def _resolved(paths: Iterable[Any]) -> Set[str]:
    return {os.path.realpath(str(p)) for p in paths}


def _same_content(a: Iterable[Any], b: Iterable[Any]) -> bool:
    """Whether two lists of data files are the same files or byte-identical copies (size and
    the sha256 of the first and last MiB, as run provenance records them: cheap at any size)."""
    from medssl.provenance import head_tail_sha256

    def key(paths: Iterable[Any]) -> Set[Any]:
        out = set()
        for p in paths:
            try:
                out.add((os.path.getsize(p), head_tail_sha256(p)))
            except OSError:
                out.add(os.path.realpath(str(p)))
        return out

    a, b = list(a), list(b)
    return _resolved(a) == _resolved(b) or (len(a) == len(b) and key(a) == key(b))


def _names(ds: Any, attr: str) -> Optional[Set[str]]:
    value = getattr(ds, attr, None)
    value = value() if callable(value) else value
    if value is None:
        return None
    return {str(v) for v in value if v is not None and str(v) != ""}


def _shared(train: Optional[Set[str]], test: Optional[Set[str]], what: str, of: Callable[[int, int], str]) -> Optional[str]:
    if not train or not test:
        return None
    both = sorted(train & test)
    if not both:
        return None
    return f"{len(both)} {what} ({', '.join(both[:3])}{', ...' if len(both) > 3 else ''}) {of(len(train), len(test))}"


def _image_files(ds: Any) -> Optional[List[Any]]:
    """The per-image (or per-volume / per-series) files of a dataset that has them."""
    files = getattr(ds, "files", None)
    if files is None and callable(getattr(ds, "_object_paths", None)):  # DICOM / NIfTI (radiology_base)
        files = ds._object_paths()
    return None if files is None else list(files)


def _same_collection(a: Any, b: Any) -> bool:
    """Whether two datasets come from one collection (the same root folder or manifest CSV):
    slide names and patient pseudonyms (derived from file names relative to the root when
    no patient column exists) mean the same thing only then."""
    for attr in ("csv_path", "root"):
        x, y = getattr(a, attr, None), getattr(b, attr, None)
        if x is not None and y is not None:
            return os.path.realpath(str(x)) == os.path.realpath(str(y))
    return True


def overlap(train_ds: Any, test_ds: Any) -> Optional[str]:
    """What the train and test sets share, in words, or None when they are disjoint."""
    files = _image_files(train_ds), _image_files(test_ds)
    if files[0] is not None and files[1] is not None:
        shared = _shared(_resolved(files[0]), _resolved(files[1]), "image file(s)",
                         lambda a, b: f"are in both the train ({a} files) and the test set ({b} files)")
        if shared:
            return shared
    elif (getattr(train_ds, "split", None) == getattr(test_ds, "split", None)
          and _same_content(train_ds.source_files(), test_ds.source_files())):
        return f"the train and the test set are the same split ({train_ds.split!r} of the same files or copies of them)"
    if not _same_collection(train_ds, test_ds):  # names are only comparable within one collection
        return None
    for attr, what in (("patient_ids", "patient(s)"), ("patient_names", "patient(s)"), ("slide_names", "slide(s)")):
        shared = _shared(_names(train_ds, attr), _names(test_ds, attr), what,
                         lambda a, b: f"have images in both the train ({a}) and the test set ({b})")
        if shared:
            return shared
    return None


def overlap_warning(description: str) -> str:
    """The line the report carries when an overlap was allowed."""
    return (f"train and test overlap: {description}; allowed by allow_overlap, so the scores measure fit to "
            "images the probe was trained on, not transfer")


__all__: List[str] = ["overlap", "overlap_warning"]
