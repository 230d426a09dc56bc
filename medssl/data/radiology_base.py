"""The base of the ``dicom`` and ``nifti`` data sets: items are ``(object, position)``
pairs (a DICOM object and its frame, a volume and its slice); patients and studies are
known per object by pseudonym. Subclasses fill ``_items``, ``_patients``, ``_studies``
and call :meth:`RadiologyDataset._set_labels`; they implement ``_get_image``,
``_object_paths`` and ``_fresh_cache``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medssl.data.base import MedicalImageDataset
from medssl.data.manifest_csv import ManifestRow, class_index, norm_split
from medssl.data.radiology_splits import NAME as SPLITS_NAME
from medssl.wsi.splits import SPLITS
from medssl.data.radiology_common import group_index, group_summary, select_split
from medssl.errors import ConfigError
from medssl.tasks import TASKS


def folder_splits(root: Path, paths: Sequence[Path]) -> Optional[List[str]]:
    """The user's split folders, ``ROOT/train|val|test/...`` (``valid`` = ``val``): the
    folder of each path, or ``None`` when ROOT has a splits file or no such folder."""
    if (root / SPLITS_NAME).is_file():
        return None
    names = {p.name: norm_split(p.name) for p in root.iterdir() if p.is_dir() and norm_split(p.name) in SPLITS}
    if not names:
        return None
    return [names.get(p.relative_to(root).parts[0], "") if len(p.relative_to(root).parts) > 1 else "" for p in paths]


class RadiologyDataset(MedicalImageDataset):
    """Shared contract, grouping and pickling of the radiology data sets."""

    csv_path: Optional[Path] = None
    _items: List[Tuple[int, Any]]
    _patients: List[str]
    _studies: List[str]
    _user_split: bool = False
    _where: str = ""

    def _object_paths(self) -> List[Path]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fresh_cache(self) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _check_args(name: str, root: Any, csv: Any, channels: Any, task: Any, what: str) -> None:
        """ConfigError for the arguments both data sets share (``what``: the files ``root`` holds)."""
        if root is None and csv is None:
            raise ConfigError(f"{name}: give 'root' (a folder of {what}) or 'csv' (a manifest with a path column)")
        if channels is not None and channels not in (1, 3):
            raise ConfigError(f"{name}: channels must be 1, 3 or null, got {channels!r}")
        if task is not None and task not in TASKS or task == "multilabel":
            raise ConfigError(f"{name}: task must be binary, multiclass, ordinal or null, got {task!r}")

    def _select(self, split: Optional[str], splits: Any, rows: Optional[List[ManifestRow]], columns: Sequence[str],
                paths: List[Path], patients: List[str], studies: List[str], base: Path, salt: bytes,
                class_names: Optional[Sequence[str]]) -> Tuple[np.ndarray, Optional[np.ndarray], List[str]]:
        """Choose the objects of ``split`` (one entry per object in ``rows`` / ``paths`` /
        ``patients`` / ``studies``): ``(kept indices, per-object labels or None, class names)``.
        Sets ``split``, the kept objects' pseudonyms and where a splits file belongs."""
        labels, names = (class_index(rows, class_names, self.csv_path) if rows is not None and self.csv_path is not None
                         and "label" in columns else (None, []))
        user = [r.split for r in rows] if rows is not None and "split" in columns else None
        if rows is None and splits is None:
            user = folder_splits(base, paths)
        self.split, mask = select_split(split, {"patient": patients, "study": studies}, user, paths, splits, base,
                                        salt, self._where)
        keep = np.flatnonzero(mask)
        self._user_split, self.default_splits_dir = user is not None, base
        self._patients = [patients[i] for i in keep]
        self._studies = [studies[i] for i in keep]
        return keep, labels, names

    def _set_labels(self, labels: Optional[np.ndarray], names: Sequence[str], keep: np.ndarray,
                    task: Optional[str]) -> None:
        """Per-item labels from per-object ``labels`` (``None``: unlabelled) of the kept objects."""
        if labels is not None:
            self.class_names, self.num_classes = list(names), len(names)
            self.task = task or ("binary" if len(names) == 2 else "multiclass")
            per_object = labels[keep]
            self._labels = np.asarray([per_object[o] for o, _ in self._items], dtype=np.int64)
        else:
            self.class_names, self.num_classes, self.task = [], 0, None
            self._labels = np.full(len(self._items), -1, dtype=np.int64)
        self._labels.flags.writeable = False

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = self._fresh_cache()  # a DataLoader worker opens its own files
        return state

    def __len__(self) -> int:
        return len(self._items)

    def labels(self) -> np.ndarray:
        return self._labels

    def source_files(self) -> List[Path]:
        return ([self.csv_path] if self.csv_path is not None else []) + self._object_paths()

    @property
    def has_user_split(self) -> bool:
        """True when the manifest has a split column (used instead of a splits file)."""
        return self._user_split

    def object_groups(self, by: str) -> List[str]:
        """One patient or study pseudonym per file (``by``: ``patient`` | ``study``)."""
        return list(self._patients if by == "patient" else self._studies)

    def patient_index(self) -> np.ndarray:
        """(N,) int64: each item's position in :attr:`patient_names` (pseudonyms)."""
        return group_index([self._patients[o] for o, _ in self._items])[0]

    @property
    def patient_names(self) -> List[str]:
        return group_index(self._patients)[1]

    def _group_summary(self) -> Dict[str, Any]:
        return group_summary([self._patients[o] for o, _ in self._items], [self._studies[o] for o, _ in self._items])
