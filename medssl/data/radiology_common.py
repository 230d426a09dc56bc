"""What the ``dicom`` and ``nifti`` data sets share: size and channel handling, the
split selection (all / a splits file / the manifest's split column), per-patient indices
and the summary ``medssl data info`` prints."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from medssl.data.folder import _size_hw as folder_size_hw
from medssl.data.manifest_csv import norm_split
from medssl.data.radiology_splits import NAME as SPLITS_NAME
from medssl.data.radiology_splits import check_user_split, read_group_splits
from medssl.errors import DataError
from medssl.fileio import PathLike
from medssl.wsi.splits import SPLITS


def size_hw(image_size: Union[None, int, Sequence[int]], where: str) -> Optional[Tuple[int, int]]:
    """``None`` or ``(h, w)`` from an int or a pair (the ``folder`` data set's rule)."""
    return folder_size_hw(image_size, where)


def check_one_size(sizes: Sequence[Tuple[int, int]], paths: Sequence[Path], where: str) -> None:
    """DataError when images of several sizes would be batched without ``image_size``."""
    counts = Counter(sizes)
    if len(counts) <= 1:
        return
    first = {s: paths[sizes.index(s)] for s in counts}
    listed = ", ".join(f"{h}x{w} in {n} ({first[(h, w)].parent.name}/{first[(h, w)].name})"
                       for (h, w), n in counts.most_common(4))
    raise DataError(f"{where}: images of {len(counts)} different sizes ({listed}); they cannot be batched. "
                    "Set image_size (e.g. image_size: 256) to resize every image on load")


def finish(img: np.ndarray, channels: int, hw: Optional[Tuple[int, int]]) -> np.ndarray:
    """HWC uint8 ``img`` -> ``channels`` channels (RGB -> gray by ITU-R 601-2 luma, gray ->
    RGB by repetition), resized bilinearly to ``hw`` when given."""
    if img.shape[-1] == 3 and channels == 1:
        img = np.asarray(Image.fromarray(img, "RGB").convert("L"))[..., None]
    if hw is not None and img.shape[:2] != hw:
        if img.shape[-1] == 1:
            img = np.asarray(Image.fromarray(img[..., 0], "L").resize((hw[1], hw[0]), Image.BILINEAR))[..., None]
        else:
            img = np.asarray(Image.fromarray(img, "RGB").resize((hw[1], hw[0]), Image.BILINEAR))
    if img.shape[-1] == 1 and channels == 3:
        img = np.repeat(img, 3, axis=-1)
    return np.ascontiguousarray(img)


def select_split(split: Optional[str], groups: Dict[str, List[str]], user_splits: Optional[List[str]],
                 paths: List[Path], splits_file: Optional[PathLike], default_dir: Path, salt: bytes,
                 where: str) -> Tuple[str, np.ndarray]:
    """``(split name, boolean mask over the objects)``.

    ``groups`` maps ``patient`` / ``study`` to one pseudonym per object; ``user_splits``
    is the manifest's split column (``None`` without one). ``split`` ``None`` / ``all``
    keeps everything; otherwise the user's column is used (after :func:`check_user_split`)
    when there is one, else the splits file (``splits_file`` or ``default_dir/splits.json``).
    """
    n = len(paths)
    if user_splits is not None:
        check_user_split(groups["patient"], user_splits, paths, "patient", where)
    if split is None or str(split).strip().lower() in ("", "all"):
        return "all", np.ones(n, dtype=bool)
    name = norm_split(split)
    if user_splits is not None:
        mask = np.asarray([s == name for s in user_splits], dtype=bool)
        if not mask.any():
            raise DataError(f"{where}: no rows with split {split!r}; splits present: {sorted(set(user_splits))}")
        return name, mask
    if name not in SPLITS:
        raise DataError(f"{where}: unknown split {split!r}; use all, train, val or test")
    path = Path(splits_file).expanduser() if splits_file is not None else default_dir / SPLITS_NAME
    doc = read_group_splits(path, salt, str(default_dir))
    wanted = doc["splits"][name]
    mask = np.asarray([g in wanted for g in groups[doc["by"]]], dtype=bool)
    return name, mask


def group_summary(patients: Sequence[str], studies: Sequence[str]) -> Dict[str, Any]:
    """Patients, studies and images per patient / study (min, median, max)."""
    def spread(ids: Sequence[str]) -> Dict[str, float]:
        c = np.asarray(list(Counter(ids).values()) or [0])
        return {"min": int(c.min()), "median": float(np.median(c)), "max": int(c.max())}

    return {"patients": len(set(patients)), "studies": len(set(studies)),
            "images_per_patient": spread(patients), "images_per_study": spread(studies)}


def group_index(ids: Sequence[str]) -> Tuple[np.ndarray, List[str]]:
    """``(index (N,) int64 into names, sorted distinct names)``."""
    names = sorted(set(ids))
    pos = {n: i for i, n in enumerate(names)}
    return np.asarray([pos[i] for i in ids], dtype=np.int64), names
