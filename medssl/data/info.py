"""What is in a dataset: formats, splits, sizes, label counts, file checksums, channel stats.

Library side of ``medssl data info`` and ``medssl data stats``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medssl.data.base import MedicalImageDataset
from medssl.data.medmnist.files import file_md5, official_md5, parse_stem
from medssl.data.sample import embedded_sample_root
from medssl.data.open import Spec, open_dataset, resolve_config
from medssl.data.pcam import KNOWN_MD5 as PCAM_MD5
from medssl.data.stl10 import KNOWN_MD5 as STL10_MD5
from medssl.errors import ConfigError, DataError
from medssl.progress import Progress

# Splits tried per format, in display order; ``None`` = the whole dataset.
CANDIDATE_SPLITS: Dict[str, Tuple[Optional[str], ...]] = {
    "pcam": ("train", "valid", "test"),
    "stl10": ("train", "test", "unlabeled"),
    "medmnist": ("train", "val", "test"),
    "folder": ("train", "val", "test"),
    "wsi_tiles": ("all", "train", "val", "test"),  # train/val/test once `medssl data split` ran
    "dicom": ("all", "train", "val", "test"),  # train/val/test from a split column or `medssl data split --by patient`
    "nifti": ("all", "train", "val", "test"),
}


def default_split(name: str) -> Optional[str]:
    """The split ``stats`` uses when none is given: ``train`` for formats that have splits."""
    return "train" if name in ("pcam", "stl10", "medmnist") else None


def label_counts(ds: MedicalImageDataset) -> Dict[str, int]:
    """Items per class name (positives per class for multilabel), plus ``unlabelled`` if any."""
    labels = ds.labels()
    names = list(ds.class_names)
    if labels.ndim == 2:
        return {n: int(labels[:, i].sum()) for i, n in enumerate(names)}
    counts = {n: int((labels == i).sum()) for i, n in enumerate(names)}
    if (labels < 0).any():
        counts["unlabelled"] = int((labels < 0).sum())
    return counts


def describe_dataset(ds: MedicalImageDataset) -> Dict[str, Any]:
    """Length, image shape (from item 0), task, classes and label counts of one split."""
    shape = list(ds[0][0].shape) if len(ds) else None
    out = {
        "length": len(ds),
        "image_shape": shape,
        "task": ds.task,
        "num_classes": ds.num_classes,
        "class_names": list(ds.class_names),
        "label_counts": label_counts(ds),
    }
    summary = getattr(ds, "summary", None)  # dicom / nifti: patients, studies, modalities, skipped files
    if callable(summary):
        out["radiology"] = summary()
    return out


def _source_files(name: str, cfg: Dict[str, Any], datasets: Sequence[MedicalImageDataset]) -> List[Path]:
    files: List[Path] = []
    for ds in datasets:
        if name in ("pcam", "stl10"):
            files += list(ds.files)
        elif name == "medmnist":
            path = Path(ds.path)
            files += [path] + ([path.with_suffix(".json")] if path.with_suffix(".json").is_file() else [])
        elif name in ("wsi_tiles", "dicom", "nifti"):
            files += ds.source_files()
    if name == "folder" and cfg.get("csv"):
        files.append(Path(cfg["csv"]))
    return list(dict.fromkeys(files))  # unique, in order


def _expected_md5(name: str, path: Path) -> Optional[str]:
    if name == "pcam":
        return PCAM_MD5.get(path.name)
    if name == "stl10":
        return STL10_MD5.get(path.name)
    if name == "medmnist" and path.suffix == ".npz":
        flag, size = parse_stem(path)
        return official_md5(flag, size)
    return None


def file_record(name: str, path: Path, checksum: bool = True) -> Dict[str, Any]:
    """Size and (streamed) md5 of one file, compared to the official md5 when one is known."""
    rec: Dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size}
    if checksum:
        rec["md5"] = file_md5(path)
        expected = _expected_md5(name, path)
        if expected is not None:
            rec["official_md5"] = expected
            rec["matches_official"] = rec["md5"] == expected
    return rec


def describe_path(spec: Spec, checksum: bool = True) -> Dict[str, Any]:
    """Describe every split found for a path, YAML config or config mapping.

    Returns ``{"format", "config", "splits": {split: {...} or {"error": msg}}, "files":
    [{"path", "bytes", "md5", "official_md5"?, "matches_official"?}], "embedded_sample": the
    folder of ``medssl data sample`` holding the data, or None}``. Raises
    :class:`DataError` when no split at all can be opened (with the first error).
    """
    cfg = resolve_config(spec)
    name = str(cfg["name"]).lower()
    base = {k: v for k, v in cfg.items() if k != "split"}
    splits: Dict[str, Any] = {}
    opened: List[MedicalImageDataset] = []
    errors: List[DataError] = []
    for split in CANDIDATE_SPLITS.get(name, (None,)):
        try:
            ds = open_dataset(base, split=split)
        except DataError as exc:
            errors.append(exc)
            splits[str(split)] = {"error": str(exc)}
            continue
        opened.append(ds)
        splits[str(ds.split or split or "all")] = describe_dataset(ds)
    if not opened and name == "folder":  # no split column / folders: the whole set
        ds = open_dataset(base)
        opened.append(ds)
        splits = {"all": describe_dataset(ds)}
    if not opened:
        raise errors[0]
    sources = _source_files(name, base, opened)
    files = [file_record(name, p, checksum) for p in sources]
    sample = embedded_sample_root(sources[0]) if sources else None
    return {"format": name, "config": base, "splits": splits, "files": files,
            "embedded_sample": str(sample) if sample is not None else None}


def _sample_indices(n: int, max_images: Optional[int]) -> np.ndarray:
    if max_images is None or max_images <= 0 or max_images >= n:
        return np.arange(n)
    # Evenly spaced rather than the first k: files are often sorted by class or source.
    return np.unique(np.linspace(0, n - 1, max_images).round().astype(np.int64))


def check_max_images(max_images: Optional[int]) -> None:
    """ConfigError unless ``max_images`` is ``None`` or an integer >= 0 (0 and None = all)."""
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer))
                                   or max_images < 0):
        raise ConfigError(f"max_images (--max-images) must be a whole number >= 0, got {max_images!r}; "
                          "0 uses every image")


def images_used(n: int, max_images: Optional[int]) -> int:
    """How many of ``n`` items :func:`channel_stats` reads for ``max_images``."""
    return len(_sample_indices(n, max_images)) if n else 0


def channel_stats(dataset: MedicalImageDataset, max_images: Optional[int] = None,
                  progress: bool = False) -> Tuple[List[float], List[float]]:
    """Per-channel mean and (population) std of the images on a 0..1 scale.

    Streams over ``max_images`` evenly spaced items (all when ``None`` or 0), merging
    per-image moments (Chan et al.), so memory stays one image and precision does not
    depend on the dataset size. ``progress`` shows the images read (:mod:`medssl.progress`).
    """
    check_max_images(max_images)
    n = len(dataset)
    if n == 0:
        raise DataError(f"{type(dataset).__name__} split {dataset.split!r} is empty; no statistics to compute")
    count = 0
    mean: Optional[np.ndarray] = None
    m2: Optional[np.ndarray] = None
    indices = _sample_indices(n, max_images)
    bar = Progress(len(indices), f"stats {dataset.split or 'all'}", enabled=progress, unit="img")
    for i in indices:
        bar.update(1)
        img = np.asarray(dataset[int(i)][0], dtype=np.float64) / 255.0
        px = img.reshape(-1, img.shape[-1])
        k = px.shape[0]
        m_i = px.mean(axis=0)
        m2_i = ((px - m_i) ** 2).sum(axis=0)
        if mean is None:
            mean, m2, count = m_i, m2_i, k
            continue
        delta = m_i - mean
        total = count + k
        mean = mean + delta * (k / total)
        m2 = m2 + m2_i + delta**2 * (count * k / total)
        count = total
    bar.close()
    assert mean is not None and m2 is not None
    return [float(v) for v in mean], [float(v) for v in np.sqrt(m2 / count)]
