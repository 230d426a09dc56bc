"""DICOM images: a folder tree (a PACS export) or a CSV manifest of ``.dcm`` paths.

Registry name ``dicom``::

    {"name": "dicom", "root": "export/", "split": "train", "window": "lung", "image_size": 256}

* ``root``: a folder searched recursively (:mod:`medssl.data.dicom_scan` says which files
  are candidates and which are skipped, with a counted reason); or ``csv``: a manifest
  with a ``path`` column and optional ``label``, ``split``, ``patient``, ``study``
  (:mod:`medssl.data.manifest_csv`). A folder tree is unlabelled (pretraining); labels
  come from the manifest.
* ``split``: ``all`` (default) / ``train`` / ``val`` / ``test``. From the manifest's
  ``split`` column when it has one (refused when a patient is in two splits), else from
  the patient-level splits file (``splits``, default ``ROOT/splits.json``, written by
  ``medssl data split ROOT --by patient``).
* ``window``: how values become 0..255 (:mod:`medssl.data.intensity`); ``auto`` uses the
  file's own VOI LUT / window. ``multi`` stacks lung / mediastinum / bone as channels.
* ``frames``: ``all`` (each frame of a multi-frame object is an item), ``middle``, or a
  frame index.
* ``channels``: 1 or 3; default 3 for colour data or a multi-window, else 1.
* ``image_size``: ``None`` keeps native sizes (an error when sizes differ), an int or
  ``[h, w]`` resizes bilinearly on load.
* ``salt_file``: where the id salt is (:mod:`medssl.data.pseudonym`).

Items are ``(HWC uint8, label)``; pixels follow :mod:`medssl.data.dicom_pixels`.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from medssl.data.base import MedicalImageDataset
from medssl.data.dicom_codecs import check_decodable, syntax_name
from medssl.data.dicom_pixels import COLOUR, frame_image
from medssl.data.dicom_scan import (REASONS, DicomRecord, Skipped, candidates, pick_frames, read_record,
                                    require_images, skip_counts, skip_summary)
from medssl.data.intensity import parse_window, window_channels
from medssl.data.manifest_csv import class_index, read_manifest
from medssl.data.pseudonym import load_salt, pseudonym
from medssl.data.radiology_common import check_one_size, finish, group_index, group_summary, select_split, size_hw
from medssl.errors import ConfigError, DataError, DataWarning
from medssl.fileio import PathLike
from medssl.registry import DATASETS
from medssl.tasks import TASKS


@DATASETS.register("dicom")
class DicomDataset(MedicalImageDataset):
    """DICOM images from a folder tree or a CSV manifest (see the module docstring)."""

    def __init__(self, root: Optional[PathLike] = None, csv: Optional[PathLike] = None, split: Optional[str] = None,
                 splits: Optional[PathLike] = None, window: Any = "auto", frames: Union[str, int] = "all",
                 channels: Optional[int] = None, image_size: Union[None, int, Sequence[int]] = None,
                 task: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
                 salt_file: Optional[PathLike] = None, allow_outside_root: bool = False) -> None:
        if root is None and csv is None:
            raise ConfigError("dicom: give 'root' (a folder of DICOM files) or 'csv' (a manifest with a path column)")
        if channels is not None and channels not in (1, 3):
            raise ConfigError(f"dicom: channels must be 1, 3 or null, got {channels!r}")
        if task is not None and task not in TASKS or task == "multilabel":
            raise ConfigError(f"dicom: task must be binary, multiclass, ordinal or null, got {task!r}")
        if not (frames in ("all", "middle") or (isinstance(frames, int) and not isinstance(frames, bool))):
            raise ConfigError(f"dicom: frames must be 'all', 'middle' or a frame index, got {frames!r}")
        self.window = parse_window(window, "dicom: window")
        self.size_hw = size_hw(image_size, "dicom")
        salt = load_salt(salt_file)
        self.root = Path(root).expanduser() if root is not None else None
        self.csv_path = Path(csv).expanduser() if csv is not None else None
        rows = None
        if self.csv_path is not None:
            rows, columns, self.csv_path = read_manifest(self.csv_path, self.root, allow_outside_root)
            paths = [r.path for r in rows]
            self._where = str(self.csv_path)
            base = self.csv_path.parent
        else:
            assert self.root is not None
            if not self.root.is_dir():
                raise DataError(f"dicom: root {self.root} is not a directory")
            paths = candidates(self.root)
            self._where, base = str(self.root), self.root
        records: List[DicomRecord] = []
        self.skipped: List[Skipped] = []
        kept_rows = []
        for i, p in enumerate(paths):
            r = read_record(p, salt)
            if isinstance(r, Skipped):
                self.skipped.append(r)
                continue
            records.append(r)
            if rows is not None:
                kept_rows.append(rows[i])
        require_images(records, self.skipped, self._where)
        check_decodable([r.transfer_syntax for r in records], self._where)
        patients = [r.patient for r in records]
        studies = [r.study for r in records]
        if rows is not None and "patient" in columns:
            patients = [pseudonym(salt, "patient", row.patient) if row.patient else p for row, p in zip(kept_rows, patients)]
        if rows is not None and "study" in columns:
            studies = [pseudonym(salt, "study", row.study) if row.study else s for row, s in zip(kept_rows, studies)]
        labels = None
        names: List[str] = []
        if rows is not None and "label" in columns:
            labels, names = class_index(kept_rows, class_names, Path(self._where))
        user_splits = [row.split for row in kept_rows] if rows is not None and "split" in columns else None
        self.split, mask = select_split(split, {"patient": patients, "study": studies}, user_splits,
                                        [r.path for r in records], splits, base, salt, self._where)
        keep = np.flatnonzero(mask)
        self._user_split = user_splits is not None
        self.default_splits_dir = base
        self.records = [records[i] for i in keep]
        self._patients = [patients[i] for i in keep]
        self._studies = [studies[i] for i in keep]
        self._items = pick_frames(self.records, frames)
        if self.size_hw is None:
            check_one_size([(r.rows, r.columns) for r in self.records], [r.path for r in self.records], self._where)
        colour = any(r.photometric in COLOUR for r in self.records)
        self.in_channels = channels if channels is not None else (3 if colour or window_channels(self.window) == 3 else 1)
        if labels is not None:
            self.class_names = names
            self.num_classes = len(names)
            self.task = task or ("binary" if len(names) == 2 else "multiclass")
            per_object = labels[keep]
            self._labels = np.asarray([per_object[i] for i, _ in self._items], dtype=np.int64)
        else:
            self.class_names, self.num_classes, self.task = [], 0, None
            self._labels = np.full(len(self._items), -1, dtype=np.int64)
        self._labels.flags.writeable = False
        self._cache: Dict[str, Any] = {"pid": None, "path": None, "ds": None}
        if self.skipped:
            warnings.warn(f"dicom: skipped {len(self.skipped)} file(s) under {self._where} that are not images: "
                          f"{skip_summary(self.skipped)}", DataWarning, stacklevel=3)

    # -- reading ----------------------------------------------------------------------------
    def _dataset(self, path: Path) -> Any:
        import pydicom

        c = self._cache
        if c["pid"] != os.getpid() or c["path"] != path:  # one object per process: frames of it come in runs
            try:
                ds = pydicom.dcmread(path)
            except Exception as exc:
                raise DataError(f"cannot read DICOM file {path}: {type(exc).__name__}: {exc}") from exc
            c.update(pid=os.getpid(), path=path, ds=ds)
        return c["ds"]

    def _get_image(self, index: int) -> np.ndarray:
        obj, frame = self._items[index]
        rec = self.records[obj]
        where = f"{rec.path}" + (f" frame {frame}" if frame is not None else "")
        img = frame_image(self._dataset(rec.path), frame, self.window, where)
        return finish(img, self.in_channels, self.size_hw)

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {"pid": None, "path": None, "ds": None}
        return state

    # -- dataset contract -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def labels(self) -> np.ndarray:
        return self._labels

    def source_files(self) -> List[Path]:
        return ([self.csv_path] if self.csv_path is not None else []) + [r.path for r in self.records]

    @property
    def has_user_split(self) -> bool:
        """True when the manifest has a split column (used instead of a splits file)."""
        return self._user_split

    def object_groups(self, by: str) -> List[str]:
        """One patient or study pseudonym per file (``by``: ``patient`` | ``study``)."""
        return list(self._patients if by == "patient" else self._studies)

    def patient_index(self) -> np.ndarray:
        """(N,) int64: each item's position in :attr:`patient_names` (pseudonyms)."""
        return group_index([self._patients[i] for i, _ in self._items])[0]

    @property
    def patient_names(self) -> List[str]:
        return group_index(self._patients)[1]

    def summary(self) -> Dict[str, Any]:
        """Patients, studies, images per patient / study, modalities, transfer syntaxes and
        the skipped files with reasons (pseudonyms only; paths as given)."""
        d = group_summary([self._patients[i] for i, _ in self._items], [self._studies[i] for i, _ in self._items])
        d.update(objects=len(self.records),
                 modalities=dict(Counter(r.modality for r in self.records).most_common()),
                 transfer_syntaxes=dict(Counter(syntax_name(r.transfer_syntax) for r in self.records).most_common()),
                 skipped={REASONS[k]: v for k, v in skip_counts(self.skipped).items()},
                 unreadable=[{"path": str(s.path), "why": REASONS[s.reason] + (f": {s.detail}" if s.detail else "")}
                             for s in self.skipped])
        return d

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(source=self._where, image_size=list(self.size_hw) if self.size_hw else None,
                 window=str(self.window), objects=len(self.records), skipped=len(self.skipped))
        return d
