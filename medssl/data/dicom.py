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

from medssl.data.dicom_codecs import check_decodable, syntax_name
from medssl.data.dicom_pixels import COLOUR, frame_image
from medssl.data.dicom_scan import (REASONS, DicomRecord, Skipped, candidates, pick_frames, read_record,
                                    require_images, skip_counts, skip_summary)
from medssl.data.intensity import parse_window, window_channels
from medssl.data.manifest_csv import read_manifest
from medssl.data.pseudonym import load_salt, pseudonym
from medssl.data.radiology_base import RadiologyDataset
from medssl.data.radiology_common import check_one_size, finish, size_hw
from medssl.errors import ConfigError, DataError, DataWarning
from medssl.fileio import PathLike
from medssl.registry import DATASETS


@DATASETS.register("dicom")
class DicomDataset(RadiologyDataset):
    """DICOM images from a folder tree or a CSV manifest (see the module docstring)."""

    def __init__(self, root: Optional[PathLike] = None, csv: Optional[PathLike] = None, split: Optional[str] = None,
                 splits: Optional[PathLike] = None, window: Any = "auto", frames: Union[str, int] = "all",
                 channels: Optional[int] = None, image_size: Union[None, int, Sequence[int]] = None,
                 task: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
                 salt_file: Optional[PathLike] = None, allow_outside_root: bool = False) -> None:
        self._check_args("dicom", root, csv, channels, task, "DICOM files")
        if not (frames in ("all", "middle") or (isinstance(frames, int) and not isinstance(frames, bool))):
            raise ConfigError(f"dicom: frames must be 'all', 'middle' or a frame index, got {frames!r}")
        self.window = parse_window(window, "dicom: window")
        self.size_hw = size_hw(image_size, "dicom")
        salt = load_salt(salt_file)
        self.root = Path(root).expanduser() if root is not None else None
        self.csv_path = Path(csv).expanduser() if csv is not None else None
        rows, columns = None, []
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
            patients = [pseudonym(salt, "patient", row.patient) if row.patient else p
                        for row, p in zip(kept_rows, patients)]
        if rows is not None and "study" in columns:
            studies = [pseudonym(salt, "study", row.study) if row.study else s for row, s in zip(kept_rows, studies)]
        keep, labels, names = self._select(split, splits, kept_rows if rows is not None else None, columns,
                                           [r.path for r in records], patients, studies, base, salt, class_names)
        self.records = [records[i] for i in keep]
        self._items = pick_frames(self.records, frames)
        if self.size_hw is None:
            check_one_size([(r.rows, r.columns) for r in self.records], [r.path for r in self.records], self._where)
        colour = any(r.photometric in COLOUR for r in self.records)
        wide = colour or window_channels(self.window) == 3
        self.in_channels = channels if channels is not None else (3 if wide else 1)
        self._set_labels(labels, names, keep, task)
        self._cache = self._fresh_cache()
        if self.skipped:
            warnings.warn(f"dicom: skipped {len(self.skipped)} file(s) under {self._where} that are not images: "
                          f"{skip_summary(self.skipped)}", DataWarning, stacklevel=3)

    # -- reading ----------------------------------------------------------------------------
    def _dataset(self, rec: DicomRecord) -> Any:
        import pydicom

        c = self._cache
        if c["pid"] != os.getpid() or c["path"] != rec.path:  # one object per process: frames of it come in runs
            try:
                ds = pydicom.dcmread(rec.path, force=rec.forced)
            except Exception as exc:
                raise DataError(f"cannot read DICOM file {rec.path}: {type(exc).__name__}: {exc}") from exc
            if rec.forced:  # pixel decoding needs the transfer syntax the header scan inferred
                ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = rec.transfer_syntax
            c.update(pid=os.getpid(), path=rec.path, ds=ds)
        return c["ds"]

    def _get_image(self, index: int) -> np.ndarray:
        obj, frame = self._items[index]
        rec = self.records[obj]
        where = f"{rec.path}" + (f" frame {frame}" if frame is not None else "")
        img = frame_image(self._dataset(rec), frame, self.window, where)
        return finish(img, self.in_channels, self.size_hw)

    def _fresh_cache(self) -> Dict[str, Any]:
        return {"pid": None, "path": None, "ds": None}

    def _object_paths(self) -> List[Path]:
        return [r.path for r in self.records]

    def summary(self) -> Dict[str, Any]:
        """Patients, studies, images per patient / study, modalities, transfer syntaxes and
        the skipped files with reasons (pseudonyms only; paths as given)."""
        d = self._group_summary()
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
