"""Open a dataset from a config mapping, a YAML file or just a path (format auto-detected).

>>> ds = open_dataset("data/pcam", split="val")            # folder of camelyonpatch_*.h5
>>> ds = open_dataset("data/bloodmnist.npz", split="test")  # a MedMNIST-layout npz
>>> ds = open_dataset({"name": "stl10", "root": "data/stl10", "split": "unlabeled"})

Detection rules for a path (first match wins):

* ``*.yaml`` / ``*.yml`` -- its ``data:`` mapping, or the whole mapping if it has ``name``;
* ``*.npz`` -- ``medmnist`` with ``path=`` the file;
* ``*.h5`` named ``camelyonpatch_level_2_split_{split}_{x|y}.h5`` -- ``pcam`` of its folder,
  that split unless ``split`` is given;
* ``*_X.bin`` / ``*_y.bin`` -- ``stl10`` of its folder, that split unless given;
* ``*.csv`` -- ``dicom`` / ``nifti`` with ``csv=`` the file when its first ``path`` ends in
  ``.dcm`` / ``.nii`` / ``.nii.gz``, else ``folder``;
* a directory holding a ``medssl data tile`` ``manifest.json`` -> ``wsi_tiles``;
* a directory holding ``camelyonpatch_level_2_split_*`` files -> ``pcam``; holding
  ``stl10_binary/`` or ``*_X.bin`` -> ``stl10``; holding ``labels.csv`` -> ``folder`` with
  that CSV; holding exactly one ``.npz`` -> ``medmnist``; holding ``.nii`` / ``.nii.gz``
  volumes -> ``nifti``; holding ``.dcm`` files or a ``DICOMDIR`` (up to four folder levels
  down) -> ``dicom``; otherwise, holding images (directly or up to two folder levels
  down) -> ``folder``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from medssl.data.base import MedicalImageDataset
from medssl.data.dicom_scan import has_preamble
from medssl.errors import ConfigError, DataError
from medssl.fileio import PathLike
from medssl.registry import DATASETS
from medssl.text import looked_at, name_list

Spec = Union[PathLike, Mapping[str, Any]]

_PCAM_FILE = re.compile(r"^camelyonpatch_level_2_split_(train|valid|test)_(x|y)\.h5$")
_STL_FILE = re.compile(r"^(train|test|unlabeled)_(X|y)\.bin$")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LOOKED_FOR = (
    "a .yaml/.yml config with a 'data:' mapping; a .npz (MedMNIST layout); a "
    "camelyonpatch_level_2_split_*.h5 file or a folder of them (PCAM); a folder holding "
    "stl10_binary/ or *_X.bin files (STL-10); a `medssl data tile` output folder (wsi_tiles); "
    "a .csv with path,label columns or a folder of images (own images); a folder of .dcm files (dicom) or of "
    ".nii / .nii.gz volumes (nifti)"
)


def _yaml_config(path: Path) -> Dict[str, Any]:
    from medssl.config import load_yaml  # the one YAML reader: size, encoding, duplicate keys, aliases

    doc = load_yaml(path)
    if isinstance(doc, Mapping) and isinstance(doc.get("data"), Mapping):
        return dict(doc["data"])
    if isinstance(doc, Mapping) and "name" in doc:
        return dict(doc)
    raise ConfigError(f"{path}: expected a 'data:' mapping with a dataset 'name' (or a top-level 'name')")


def _has_images(folder: Path) -> bool:
    # root/img, root/<class>/img or root/<split>/<class>/img
    for depth_glob in ("*", "*/*", "*/*/*"):
        if any(p.suffix.lower() in _IMAGE_EXT for p in folder.glob(depth_glob)):
            return True
    return False


def _radiology(folder: Path) -> Optional[str]:
    """``nifti`` / ``dicom`` when the folder holds such files up to four levels down
    (DICOM: ``.dcm``, a ``DICOMDIR``, or suffix-less files with the ``DICM`` preamble)."""
    for depth in range(1, 6):
        pattern = "/".join(["*"] * depth)
        paths = list(folder.glob(pattern))
        names = [p.name.lower() for p in paths]
        if any(n.endswith((".nii", ".nii.gz")) for n in names):
            return "nifti"
        if any(n.endswith(".dcm") or n == "dicomdir" for n in names):
            return "dicom"
        bare = [p for p in paths if not p.suffix and p.is_file()][:20]  # PACS exports often drop the suffix
        if any(has_preamble(p) for p in bare):
            return "dicom"
    return None


def _csv_config(path: Path) -> Dict[str, Any]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.DictReader(fh), None) or {}
    except (OSError, UnicodeDecodeError, csv.Error):
        first = {}  # the folder data set reports the CSV's problem
    cell = str(first.get("path") or "").strip().lower()
    if cell.endswith((".nii", ".nii.gz")):
        return {"name": "nifti", "csv": str(path)}
    if cell.endswith(".dcm"):
        return {"name": "dicom", "csv": str(path)}
    return {"name": "folder", "csv": str(path)}


def _dir_config(folder: Path) -> Optional[Dict[str, Any]]:
    if (folder / "manifest.json").is_file() and (folder / "shards").is_dir():
        return {"name": "wsi_tiles", "root": str(folder)}
    if any(folder.glob("camelyonpatch_level_2_split_*")):
        return {"name": "pcam", "root": str(folder)}
    if (folder / "stl10_binary").is_dir() or any(folder.glob("*_X.bin")) or (folder / "stl10_binary.tar.gz").is_file():
        return {"name": "stl10", "root": str(folder)}
    if (folder / "labels.csv").is_file():
        return _csv_config(folder / "labels.csv")
    npz = sorted(folder.glob("*.npz"))
    if len(npz) == 1:
        return {"name": "medmnist", "path": str(npz[0])}
    if len(npz) > 1:
        raise DataError(
            f"{folder} holds several .npz files ({name_list(p.name for p in npz)}); pass one of them"
        )
    kind = _radiology(folder)
    if kind is not None:
        return {"name": kind, "root": str(folder)}
    if _has_images(folder):
        return {"name": "folder", "root": str(folder)}
    return None


def detect(path: PathLike) -> Dict[str, Any]:
    """The dataset config (``{"name": ..., ...}``, no split unless the path implies one) for a path."""
    p = Path(path).expanduser()
    if not p.exists():
        gz = p.with_name(p.name + ".gz")
        if gz.is_file():
            raise DataError(f"found {gz.name} but not {p.name} in {p.parent}. Decompress it first: gunzip -k {gz}")
        raise DataError(f"{p} does not exist (looked at {looked_at(p)}). Expected {LOOKED_FOR}")
    suffix = p.suffix.lower()
    if p.is_file():
        if suffix in (".yaml", ".yml"):
            return _yaml_config(p)
        if suffix == ".npz":
            return {"name": "medmnist", "path": str(p)}
        if suffix == ".csv":
            return _csv_config(p)
        m = _PCAM_FILE.match(p.name)
        if m:
            return {"name": "pcam", "root": str(p.parent), "split": m.group(1)}
        m = _STL_FILE.match(p.name)
        if m:
            root = p.parent.parent if p.parent.name == "stl10_binary" else p.parent
            return {"name": "stl10", "root": str(root), "split": m.group(1)}
        if suffix == ".gz":
            raise DataError(f"{p} is compressed; decompress it first (gunzip -k {p}, or tar -xzf for a .tar.gz)")
        raise DataError(f"cannot tell the dataset format of file {p}. Expected {LOOKED_FOR}")
    cfg = _dir_config(p)
    if cfg is None:
        raise DataError(f"cannot tell the dataset format of directory {p}: found none of the known files. Expected {LOOKED_FOR}")
    return cfg


def resolve_config(spec: Spec, split: Optional[str] = None, **kwargs: Any) -> Dict[str, Any]:
    """The full registry config for ``spec`` with ``split`` and ``kwargs`` applied on top."""
    if isinstance(spec, Mapping):
        cfg = dict(spec["data"]) if "name" not in spec and isinstance(spec.get("data"), Mapping) else dict(spec)
    else:
        cfg = detect(spec)
    if "name" not in cfg:
        raise ConfigError(f"a dataset config needs a 'name' key; got keys {sorted(cfg)}")
    cfg.update(kwargs)
    if split is not None:
        cfg["split"] = split
    return cfg


def open_dataset(spec: Spec, split: Optional[str] = None, **kwargs: Any) -> MedicalImageDataset:
    """Build a dataset from a config mapping ``{name, root, ...}``, a YAML file or a path.

    ``split`` (and any ``kwargs``) override what the spec says. Raises :class:`DataError`
    when a path's format cannot be recognised, naming what was looked for.
    """
    return DATASETS.build(resolve_config(spec, split, **kwargs))
