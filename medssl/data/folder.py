"""Your own images: a CSV list, one folder per class, or a flat unlabelled folder.

Registry name ``folder``::

    DATASETS.build({"name": "folder", "root": "data/derm", "split": "train", "image_size": 224})

Three layouts, chosen from the arguments:

(a) **CSV** (``csv`` given): a header row with a ``path`` column, an optional ``label``
    column and an optional ``split`` column. ``path`` is relative to ``root`` when ``root``
    is given, else to the CSV's own directory (``csv`` itself may also be given relative to
    ``root``). Paths that leave that directory (``..``, absolute paths) are refused unless
    ``allow_outside_root: true``. With a ``split`` column, ``split=`` keeps only the rows
    of that split (``val`` and ``valid`` are the same); without ``split=`` all rows are used.
    ``label`` holds class names or integer indices. A cell with ``|`` or ``;`` (e.g.
    ``effusion|nodule``), or ``task: multilabel``, makes the task multi-label: each cell is
    a set of class names (an empty cell = no positive class). Class names, when not given,
    are the sorted distinct labels of the *whole* CSV (all splits, so every split shares
    one index); all-integer labels ``0..K-1`` keep their integer as the index. Without a
    ``label`` column the images are unlabelled.
(b) **Folder per class** (``root`` whose subfolders hold images):
    ``root/<class_name>/**/*.png`` ... Class index = position of the folder name in the
    sorted folder names (or in ``class_names`` when given). With ``split`` set, images are
    read from ``root/<split>/<class_name>/`` (the ``<split>`` folder must exist).
    Hidden folders (``.name``) are skipped; an empty class folder is an error.
(c) **Flat folder** (``root`` holding images directly, no class subfolders): unlabelled,
    every label is ``-1`` and ``task`` is ``None`` (for pretraining).

Other keys: ``channels`` (3 = RGB, the default; 1 = grayscale), ``image_size`` (``None``
keeps native sizes; an int ``s`` or ``[h, w]`` resizes on load with PIL bilinear, which
batching mixed-size images needs), ``task`` (default ``binary`` for 2 classes, else
``multiclass``; ``ordinal`` needs integer labels or ``class_names`` in order),
``class_names``, ``extensions`` (default ``.png .jpg .jpeg .tif .tiff .bmp``, any case),
``max_pixels`` (default :data:`MAX_PIXELS`, PIL's own decompression-bomb threshold,
about 9459 x 9459; ``null`` = no limit of medssl's): an image with more pixels is refused
when its item is read, from the size in its header, *before* any pixel is decoded, with
an error naming the file (a 120 KB PNG can declare 10000 x 10000 pixels = 300 MB
decoded). Larger images belong in ``medssl data tile``.

Symbolic links: a link to an image is followed. A link that leads nowhere (dangling, or
part of a loop) is skipped and reported: a :class:`~medssl.errors.DataWarning` gives the
count and the first few paths, and ``describe()["skipped_links"]`` the count.

Decoding (PIL): the EXIF orientation is applied; multi-frame files (TIFF stacks) give
their first frame; alpha is dropped; palette / CMYK / 1-bit images are converted by PIL;
RGB -> grayscale uses PIL's ITU-R 601-2 luma, grayscale -> RGB repeats the channel.
Images with more than 8 bits (16-bit ``I;16``, 32-bit ``I``, float ``F``) are scaled by
**their own maximum**: ``uint8 = round(clip(x, 0, None) * 255 / max(x))`` (all-zero
images stay 0), so 12-bit data in a 16-bit container uses the full 0..255 range; the
scale therefore differs between images. An unreadable file raises :class:`DataError`
naming it when the item is read.
"""

from __future__ import annotations

import csv as csvlib
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from medssl.data.base import MedicalImageDataset
from medssl.errors import ConfigError, DataError, DataWarning
from medssl.fileio import PathLike
from medssl.registry import DATASETS
from medssl.tasks import TASKS
from medssl.text import looked_at, name_list, no_such_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_MULTI_SEP = re.compile(r"[|;]")
_INT = re.compile(r"^-?\d+$")
_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
MAX_PIXELS: int = 89_478_485  # PIL's Image.MAX_IMAGE_PIXELS: ~0.27 GB decoded as RGB
SHOWN_LINKS = 5  # broken links named in the warning


def _same_split(a: str, b: str) -> bool:
    norm = {"valid": "val", "validation": "val"}
    return norm.get(a.strip().lower(), a.strip().lower()) == norm.get(b.strip().lower(), b.strip().lower())


def _size_hw(image_size: Union[None, int, Sequence[int]], where: str = "folder") -> Optional[Tuple[int, int]]:
    """``None`` or ``(h, w)`` from an int or a pair; ConfigError naming ``where`` otherwise."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        hw = (image_size, image_size)
    elif isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        hw = (int(image_size[0]), int(image_size[1]))
    else:
        raise ConfigError(f"{where}: image_size must be null, an int or [height, width], got {image_size!r}")
    if min(hw) < 1:
        raise ConfigError(f"{where}: image_size must be positive, got {image_size!r}")
    return hw


def _to_uint8(img: Image.Image) -> Image.Image:
    """An 8-bit 'L' image from a >8-bit one, scaled by its own maximum (see module doc)."""
    arr = np.asarray(img, dtype=np.float64)
    arr = np.clip(arr, 0, None)
    top = float(arr.max()) if arr.size else 0.0
    scaled = np.zeros(arr.shape, np.uint8) if top <= 0 else np.rint(arr * (255.0 / top)).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _too_large(path: PathLike, width: int, height: int, max_pixels: int) -> DataError:
    return DataError(
        f"image {path} is {width} x {height} = {width * height:,} pixels, more than max_pixels="
        f"{max_pixels:,}; refused before decoding. Resize it, "
        "tile it (medssl data tile), or raise the dataset's max_pixels if you mean it"
    )


def decode_image(path: PathLike, channels: int = 3, size_hw: Optional[Tuple[int, int]] = None,
                 max_pixels: Optional[int] = MAX_PIXELS) -> np.ndarray:
    """Read one image file as HWC uint8 with ``channels`` (1 or 3) channels, resized to
    ``size_hw = (h, w)`` with bilinear interpolation when given. An image of more than
    ``max_pixels`` pixels (``None``: no limit of ours) is refused from its header, before
    decoding. Raises DataError."""
    try:
        with warnings.catch_warnings():
            # the size is checked just below, against max_pixels: PIL's own warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im_ctx = Image.open(path)
        with im_ctx as im:
            if max_pixels is not None and im.size[0] * im.size[1] > max_pixels:
                raise _too_large(path, im.size[0], im.size[1], max_pixels)
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                im = _to_uint8(im)
            im = im.convert("L" if channels == 1 else "RGB")
            if size_hw is not None and im.size != (size_hw[1], size_hw[0]):
                im = im.resize((size_hw[1], size_hw[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise DataError(no_such_file("image file", path)) from exc
    except Image.DecompressionBombError as exc:  # beyond PIL's hard limit (2 x MAX_PIXELS) even when ours allows it
        raise DataError(f"image {path} is larger than PIL decodes (over {2 * MAX_PIXELS:,} pixels): {exc}; "
                        "resize or tile it (medssl data tile)") from exc
    except _PIL_ERRORS as exc:
        raise DataError(f"cannot read image {path} (corrupt, truncated or not an image): {type(exc).__name__}: {exc}") from exc
    arr = arr[..., None] if arr.ndim == 2 else arr
    return np.ascontiguousarray(arr)


def _broken_link(p: Path) -> bool:
    """A symbolic link that leads nowhere: dangling, or part of a loop (ELOOP)."""
    return p.is_symlink() and not p.exists()


def _walk_following_links(folder: Path) -> Iterator[Path]:
    """Every entry under ``folder``, descending into linked directories as into real ones
    (the docs say links are followed; ``Path.rglob`` does not follow them), each real
    directory once, so a link back up the tree is no loop."""
    seen: set = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(dirs + names):
            yield Path(top) / name


def resolve_csv_row(base: Path, cell: str, line: int, csv_path: Path, allow_outside_root: bool,
                    what: str = "image file") -> Path:
    """The file a CSV manifest's ``path`` cell names, relative to ``base``: an empty cell, a
    path leaving ``base`` (unless ``allow_outside_root``) or a missing file is a DataError
    naming the CSV, the line and the absolute path looked at."""
    if not cell:
        raise DataError(f"{csv_path} line {line}: empty 'path'")
    rel = Path(cell).expanduser()
    full = Path(os.path.normpath(base / rel))
    if not allow_outside_root:
        base_norm = Path(os.path.normpath(base.absolute()))
        if rel.is_absolute() or not Path(os.path.normpath(full.absolute())).is_relative_to(base_norm):
            raise DataError(
                f"{csv_path} line {line}: path {cell!r} points outside {base}; "
                "use paths relative to it, or set allow_outside_root: true"
            )
    if not full.is_file():
        raise DataError(f"{csv_path} line {line}: {what} {cell!r} not found (looked at {looked_at(full)})")
    return full


def _refuse_non_integer_numbers(rows: Sequence[Tuple[dict, int]], csv_path: Path) -> None:
    """Labels that are all numbers but not all integers (0.0 / 0.6) are scores or
    probabilities, not classes: refused, rather than read as class names '0.0' and '0.6'."""
    def number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    if rows and all(number(r["label"]) for r, _ in rows):
        bad = [(r["label"], ln) for r, ln in rows if not _INT.match(r["label"])]
        if bad:
            raise DataError(f"{csv_path} line {bad[0][1]}: label {bad[0][0]!r} is a non-integer number (labels read as "
                            "float); labels must be integer class indices or class names. Threshold or round them "
                            "into classes first")


def _warn_empty_classes(present: Sequence[int], csv_path: Path) -> None:
    """Integer labels make classes 0..max; say which of them no image has (labels {0, 7}
    would otherwise be an 8-class task with six empty classes, silently)."""
    empty = sorted(set(range(present[-1] + 1)) - set(present))
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        warnings.warn(f"folder: {csv_path}: integer labels {{{', '.join(map(str, present[:10]))}}} make "
                      f"{present[-1] + 1} classes, and class(es) {shown} have no image; if the labels are not class "
                      f"indices 0..K-1, set remap_labels: true (the {len(present)} labels present become classes "
                      f"0..{len(present) - 1}) or give class_names", DataWarning, stacklevel=5)


def _list_images(folder: Path, extensions: Tuple[str, ...], recursive: bool,
                 broken: Optional[list[Path]] = None) -> list[Path]:
    """Image files under ``folder`` (hidden parts skipped), sorted; broken symbolic links
    met on the way are appended to ``broken``."""
    it = _walk_following_links(folder) if recursive else folder.iterdir()
    found = []
    for p in it:
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel):
            continue
        if _broken_link(p):
            if broken is not None:
                broken.append(p)
        elif p.suffix.lower() in extensions and p.is_file():
            found.append(p)
    return sorted(found)


@DATASETS.register("folder")
class ImageFolderDataset(MedicalImageDataset):
    """Images from a CSV, class folders or a flat folder (see the module docstring)."""

    def __init__(
        self,
        root: Optional[PathLike] = None,
        csv: Optional[PathLike] = None,
        split: Optional[str] = None,
        channels: int = 3,
        image_size: Union[None, int, Sequence[int]] = None,
        task: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        allow_outside_root: bool = False,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: Optional[int] = MAX_PIXELS,
        remap_labels: bool = False,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"folder: channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        if task is not None and task not in TASKS:
            raise ConfigError(f"folder: task must be one of {', '.join(TASKS)} or null, got {task!r}")
        if root is None and csv is None:
            raise ConfigError("folder: give 'root' (an image folder) or 'csv' (a file with path,label columns)")
        if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
                                       or max_pixels < 1):
            raise ConfigError(f"folder: max_pixels must be a positive integer or null, got {max_pixels!r}")
        self.max_pixels = max_pixels
        if not isinstance(remap_labels, bool):
            raise ConfigError(f"folder: remap_labels must be true or false, got {remap_labels!r}")
        self.remap_labels = remap_labels
        self.skipped_links: list[Path] = []
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.in_channels = channels
        self.size_hw = _size_hw(image_size)
        self.split = split or ""
        self.allow_outside_root = allow_outside_root
        self.root = Path(root).expanduser() if root is not None else None
        names = list(class_names) if class_names is not None else None
        self.csv_path: Optional[Path] = None
        if csv is not None:
            self.files, labels, names, task = self._from_csv(Path(csv).expanduser(), split, names, task)
        else:
            self.files, labels, names = self._from_folders(split, names)
            self._report_broken_links()
        self.class_names = names or []
        self.num_classes = len(self.class_names)
        if labels is None:
            self.task = None
            self._labels = np.full(len(self.files), -1, dtype=np.int64)
        else:
            self.task = task or ("binary" if self.num_classes == 2 else "multiclass")
            if self.task == "binary" and self.num_classes != 2:
                raise DataError(f"{self._source}: task 'binary' needs 2 classes, found {self.num_classes}: {self.class_names}")
            self._labels = labels
        self._labels.flags.writeable = False

    # -- layouts ----------------------------------------------------------------------------
    def _from_folders(self, split: Optional[str], names: Optional[list[str]]) -> Tuple[list[Path], Optional[np.ndarray], Optional[list[str]]]:
        assert self.root is not None
        base = self.root
        if not base.is_dir():
            raise DataError(f"folder: root {base} is not a directory (looked at {looked_at(base)})")
        if split:
            subdirs = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
            match = [d for d in subdirs if _same_split(d, split)]
            if not match:
                raise DataError(
                    f"folder: split '{split}' asked for but {base} has no '{split}' subfolder "
                    f"(subfolders: {name_list(subdirs) or 'none'}); drop 'split' or arrange root/<split>/<class>/"
                )
            base = base / match[0]
        self._source = str(base)
        loose = _list_images(base, self.extensions, recursive=False, broken=self.skipped_links)
        class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            if not loose:
                raise DataError(f"folder: no images in {base} (looked for {' '.join(self.extensions)}, any case)")
            return loose, None, None  # flat, unlabelled
        if loose:
            raise DataError(
                f"folder: {base} holds both class subfolders and {len(loose)} loose images (e.g. {loose[0].name}); "
                "move the loose images into a class folder, or list the files in a CSV"
            )
        order = names if names is not None else [d.name for d in class_dirs]
        index = {n: i for i, n in enumerate(order)}
        files: list[Path] = []
        labels: list[int] = []
        for d in class_dirs:
            if d.name not in index:
                raise DataError(f"folder: class folder {d} is not in class_names {order}")
            imgs = _list_images(d, self.extensions, recursive=True, broken=self.skipped_links)
            if not imgs:
                raise DataError(f"folder: class folder {d} has no images (looked for {' '.join(self.extensions)}, any case)")
            files += imgs
            labels += [index[d.name]] * len(imgs)
        return files, np.asarray(labels, dtype=np.int64), order

    def _report_broken_links(self) -> None:
        links = sorted(set(self.skipped_links))
        self.skipped_links = links
        if links:
            shown = ", ".join(str(p) for p in links[:SHOWN_LINKS])
            more = f" and {len(links) - SHOWN_LINKS} more" if len(links) > SHOWN_LINKS else ""
            warnings.warn(f"folder: skipped {len(links)} broken symbolic link(s) under {self._source} "
                          f"(dangling, or part of a loop): {shown}{more}", DataWarning, stacklevel=4)

    def _from_csv(
        self, csv_path: Path, split: Optional[str], names: Optional[list[str]], task: Optional[str]
    ) -> Tuple[list[Path], Optional[np.ndarray], Optional[list[str]], Optional[str]]:
        if not csv_path.is_file() and self.root is not None and (self.root / csv_path).is_file():
            csv_path = self.root / csv_path
        if not csv_path.is_file():
            raise DataError(no_such_file("folder: CSV file", csv_path))
        self._source, self.csv_path = str(csv_path), csv_path
        base = self.root if self.root is not None else csv_path.parent
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as f:
                reader = csvlib.DictReader(f)
                columns = [c.strip() for c in (reader.fieldnames or [])]
                rows = [({k.strip(): (v or "").strip() for k, v in r.items() if k is not None}, reader.line_num) for r in reader]
        except (OSError, UnicodeDecodeError, csvlib.Error) as exc:
            raise DataError(f"{csv_path}: cannot read the CSV: {exc}") from exc
        if "path" not in columns:
            raise DataError(f"{csv_path}: needs a 'path' column (optional: label, split); found columns {columns}")
        has_label = "label" in columns
        if split:
            if "split" not in columns:
                raise DataError(f"{csv_path}: split '{split}' asked for but the CSV has no 'split' column (columns: {columns})")
            present = sorted({r["split"] for r, _ in rows})
            kept = [(r, ln) for r, ln in rows if _same_split(r["split"], split)]
            if not kept:
                raise DataError(f"{csv_path}: no rows with split '{split}'; splits present: {present}")
        else:
            kept = rows
        if not kept:
            raise DataError(f"{csv_path}: the CSV has no data rows")

        files = [self._resolve_row(base, r["path"], ln, csv_path) for r, ln in kept]
        if not has_label:
            return files, None, names, task
        multilabel = task == "multilabel" or any(_MULTI_SEP.search(r["label"]) for r, _ in rows)
        if multilabel:
            task = "multilabel"
            sets = [[t.strip() for t in _MULTI_SEP.split(r["label"]) if t.strip()] for r, _ in rows]
            names = names if names is not None else sorted({t for s in sets for t in s})
            index = {n: i for i, n in enumerate(names)}
            out = np.zeros((len(kept), len(names)), np.float32)
            for i, (r, ln) in enumerate(kept):
                for t in (x.strip() for x in _MULTI_SEP.split(r["label"])):
                    if t:
                        out[i, self._class_index(t, index, names, ln, csv_path)] = 1.0
            return files, out, names, task
        for r, ln in rows:
            if not r["label"]:
                raise DataError(f"{csv_path} line {ln}: empty label (path {r['path']!r}); every row needs one")
        if names is None:
            raw = sorted({r["label"] for r, _ in rows})
            _refuse_non_integer_numbers(rows, csv_path)
            if all(_INT.match(x) for x in raw):
                present = sorted({int(x) for x in raw})
                if present[0] < 0:
                    raise DataError(f"{csv_path}: integer labels must be >= 0, found {present[0]}")
                if self.remap_labels:  # the labels present, in order, become classes 0..K-1
                    names = [str(v) for v in present]
                    rows = [({**r, "label": str(present.index(int(r["label"])))}, ln) for r, ln in rows]
                    kept = [({**r, "label": str(present.index(int(r["label"])))}, ln) for r, ln in kept]
                else:
                    names = [str(i) for i in range(present[-1] + 1)]
                    _warn_empty_classes(present, csv_path)
            else:
                names = raw
        index = {n: i for i, n in enumerate(names)}
        labels = np.asarray([self._class_index(r["label"], index, names, ln, csv_path) for r, ln in kept], np.int64)
        return files, labels, names, task

    @staticmethod
    def _class_index(label: str, index: dict[str, int], names: list[str], line: int, csv_path: Path) -> int:
        if label in index:
            return index[label]
        if _INT.match(label) and 0 <= int(label) < len(names):
            return int(label)
        raise DataError(f"{csv_path} line {line}: label {label!r} is not one of the class names {names}")

    def _resolve_row(self, base: Path, cell: str, line: int, csv_path: Path) -> Path:
        return resolve_csv_row(base, cell, line, csv_path, self.allow_outside_root)

    # -- dataset contract -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.files)

    def labels(self) -> np.ndarray:
        """``(N,)`` int64 (``-1`` = unlabelled) or ``(N, num_classes)`` float32 (read-only)."""
        return self._labels

    def source_files(self) -> list[Path]:
        return ([self.csv_path] if self.csv_path is not None else []) + list(self.files)

    def _get_image(self, index: int) -> np.ndarray:
        return decode_image(self.files[index], self.in_channels, self.size_hw, self.max_pixels)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(source=self._source, image_size=list(self.size_hw) if self.size_hw else None,
                 max_pixels=self.max_pixels, skipped_links=len(self.skipped_links))
        return d
