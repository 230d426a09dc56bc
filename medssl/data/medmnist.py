"""MedMNIST v2 (2-D) ``.npz`` files, official or in the same layout.

Registry name ``medmnist``::

    DATASETS.build({"name": "medmnist", "root": "data/medmnist", "flag": "bloodmnist",
                    "split": "train"})

Config keys (all keyword arguments of :class:`MedMNISTDataset`):

* ``flag`` -- dataset flag, e.g. ``bloodmnist``, ``pathmnist``, ``chestmnist``. Official
  flags are those in ``medmnist.INFO`` (2-D ones only); any other flag is a *custom* file.
* ``root`` -- the directory holding the file. Required unless ``path`` is given: medssl
  never falls back to a hidden default such as ``~/.medmnist``.
* ``split`` -- ``train`` | ``val`` | ``test`` (``valid`` is accepted for ``val``).
* ``size`` -- ``None`` or 28 (file ``{flag}.npz``), 64, 128 or 224 (file
  ``{flag}_{size}.npz``).
* ``path`` -- an explicit ``.npz`` file instead of ``root`` + ``flag``; the flag is then the
  file stem without any ``_{size}`` suffix (``bloodmnist_64.npz`` -> ``bloodmnist``, size 64).
* ``task``, ``class_names`` -- overrides, meant for custom files (see below).
* ``download`` (default ``False``) -- fetch a missing official file with medmnist's own
  downloader. Nothing is ever downloaded unless this is ``true``.
* ``verify`` (default ``False``) -- check the file's md5 against ``medmnist.INFO``.
* ``mmap`` (default ``None`` = automatic: on for images of 128 px or more) -- keep the
  images on disk instead of in RAM (see "Large sizes").
* ``cache_dir`` -- where the on-disk ``.npy`` copies go (default: next to the npz).

File layout (the official one): a numpy ``.npz`` archive with keys ``{split}_images``
(uint8, ``(N, H, W)`` grayscale or ``(N, H, W, 3)`` RGB) and ``{split}_labels``
(``(N, 1)`` integer class index, or ``(N, K)`` 0/1 for multi-label ChestMNIST) for each
split present. A file may hold only some splits (e.g. a train-only subset).

Items are ``(image, label)``: ``image`` is HWC uint8 (grayscale gets ``C = 1``);
``label`` is a Python ``int`` for binary / multi-class / ordinal flags and a
``float32`` vector of length ``num_classes`` for multi-label flags.

Task and class names: for official flags they come from ``medmnist.INFO`` (its task
strings map to ours: ``binary-class`` -> ``binary``, ``multi-class`` -> ``multiclass``,
``multi-label, binary-class`` -> ``multilabel``, ``ordinal-regression`` -> ``ordinal``).
For a custom flag, medssl reads a sidecar ``<stem>.json`` next to the npz with keys
``task`` (one of ours or MedMNIST's strings), ``class_names`` (a list, or MedMNIST's
``{"0": name}`` dict) and optional ``description``; ``task`` / ``class_names``
arguments override it. :func:`write_medmnist_npz` writes both files.

Where to get the files: the official files are on Zenodo,
https://zenodo.org/records/10519652 (``medmnist.INFO[flag]["url"]`` is the direct link
of each; ``python -m medmnist download --size=28 --root=DIR`` fetches *all* flags of one
size). Put ``{flag}.npz`` / ``{flag}_{size}.npz`` in ``root`` or pass ``download: true``.

Large sizes: numpy cannot memory-map arrays inside an ``.npz``, so with ``mmap`` on, the
split's images are copied once (streamed, never whole in RAM) to
``{stem}.{split}_images.{key}.npy`` in ``cache_dir`` (default: the npz's directory),
written atomically, and read one item at a time with ``os.pread``
(:mod:`medssl.data.rowreader`), opened lazily in each DataLoader worker, so resident
memory stays at one image whatever the file size. The copy is keyed by the npz's
*content*, never its timestamp: ``key`` (16 hex digits) hashes the npz size, the sha256 of
its first and last MiB and the CRC-32 and size the zip archive records for the member's
whole uncompressed content (checked by ``zipfile`` when the copy is made). A replaced
npz, even one carrying an older mtime (``cp -p``, ``tar``), gets a new key and a new
copy; copies of other keys for the same split are deleted then.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from medssl.data.base import MedicalImageDataset, as_hwc, check_image_array
from medssl.data.rowreader import RowReader
from medssl.errors import ConfigError, DataError
from medssl.fileio import PathLike
from medssl.fileio import atomic_write, head_tail_sha256
from medssl.registry import DATASETS
from medssl.tasks import normalise_task

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)
ZENODO_RECORD = "https://zenodo.org/records/10519652"
MMAP_MIN_SIZE = 128  # auto-mmap from this image height on (a 128 px PathMNIST train split is ~4.4 GB)

_SIZE_SUFFIX = re.compile(r"_(28|64|128|224)$")
_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)


@functools.lru_cache(maxsize=1)
def _official_info() -> Mapping[str, Mapping[str, Any]]:
    # Imported lazily: ``import medmnist`` pulls in its evaluator (sklearn, ~2 s).
    from medmnist.info import INFO

    return {k: v for k, v in INFO.items() if not k.endswith("3d")}


def official_info(flag: str) -> Optional[Mapping[str, Any]]:
    """``medmnist.INFO[flag]`` for an official 2-D flag, else ``None``."""
    return _official_info().get(flag.lower())


def _size_key(size: Optional[int]) -> str:
    return "" if size in (None, 28) else f"_{size}"


def official_md5(flag: str, size: Optional[int] = None) -> Optional[str]:
    """The official md5 of ``{flag}.npz`` (``size`` None/28) or ``{flag}_{size}.npz``;
    ``None`` for a custom flag or a size the flag does not come in."""
    info = official_info(flag)
    return None if info is None else info.get(f"MD5{_size_key(size)}")


def npz_filename(flag: str, size: Optional[int] = None) -> str:
    """The official file name: ``bloodmnist.npz`` (28 px) or ``bloodmnist_64.npz``."""
    return f"{flag}{_size_key(size)}.npz"


def parse_stem(path: PathLike) -> Tuple[str, Optional[int]]:
    """``(flag, size)`` from a file name: ``x/bloodmnist_64.npz`` -> ``("bloodmnist", 64)``."""
    stem = Path(path).stem
    m = _SIZE_SUFFIX.search(stem)
    if m is None:
        return stem, None
    return stem[: m.start()], int(m.group(1))


def file_md5(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _how_to_get(flag: str, size: Optional[int], root: Path) -> str:
    info = official_info(flag)
    if info is None:
        return (
            f"'{flag}' is not an official MedMNIST flag, so medssl cannot fetch it: write it with "
            "medssl.data.medmnist.write_medmnist_npz or pass 'path' to the file."
        )
    url = info.get(f"url{_size_key(size)}", ZENODO_RECORD)
    return (
        f"Get it from {ZENODO_RECORD} (direct link: {url}) and put it in {root}, "
        f"or pass 'download: true' to fetch it with medmnist's downloader "
        f"(python -m medmnist download --size={size or 28} --root={root} fetches every flag)."
    )


def _download(flag: str, size: Optional[int], root: Path) -> None:
    """Fetch one official file with medmnist's own downloader (md5-checked by it)."""
    import medmnist

    info = official_info(flag)
    if info is None:
        raise DataError(f"cannot download '{flag}': not an official MedMNIST flag")
    cls = getattr(medmnist, info["python_class"])
    if (size or 28) not in cls.available_sizes:
        raise ConfigError(f"MedMNIST {flag} comes in sizes {cls.available_sizes}, not {size}")
    # medmnist's constructor would also load the split into RAM; only its download step is wanted.
    ds = cls.__new__(cls)
    ds.info, ds.size_flag, ds.root = info, _size_key(size), str(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        ds.download()
    except RuntimeError as exc:
        raise DataError(f"download of {npz_filename(flag, size)} into {root} failed: {exc}") from exc


def _normalise_class_names(names: Any, source: str) -> list[str]:
    if isinstance(names, Mapping):  # MedMNIST style {"0": "name", ...}
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: class_names dict keys must be integers 0..K-1") from exc
    if isinstance(names, (list, tuple)) and names:
        return [str(n) for n in names]
    raise DataError(f"{source}: class_names must be a non-empty list, got {names!r}")


def _npz_member_shape(zf: zipfile.ZipFile, key: str) -> Optional[Tuple[int, ...]]:
    """Shape of ``key`` from its .npy header without decompressing the array."""
    with zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)[0]
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)[0]
    return None


def _copy_member(zf: zipfile.ZipFile, key: str, dest: Path) -> None:
    """Stream ``key.npy`` out of the archive into ``dest`` atomically (temp file + rename)."""
    def copy(tmp: Path) -> None:
        with open(tmp, "wb") as out, zf.open(f"{key}.npy") as src:
            shutil.copyfileobj(src, out, length=16 << 20)

    atomic_write(dest, copy)


def _source_key(npz: Path, zf: zipfile.ZipFile, key: str) -> str:
    """16 hex digits naming the content of member ``key`` of ``npz`` (see "Large sizes")."""
    member = zf.getinfo(f"{key}.npy")
    body = f"{head_tail_sha256(npz)}:{member.filename}:{member.CRC:08x}:{member.file_size}"
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _remove_stale_copies(keep: Path, prefix: str) -> None:
    """Delete the other ``{prefix}.*.npy`` copies (made from an earlier npz) and the
    un-keyed ``{prefix}.npy`` of medssl <= 0.1.0; a reader that still has one open keeps it."""
    pattern = re.compile(re.escape(prefix) + r"(\.[0-9a-f]{16})?\.npy$")
    for p in keep.parent.iterdir():
        if p != keep and pattern.fullmatch(p.name):
            try:
                p.unlink()
            except OSError:
                pass  # another process removed it, or no permission: the key still protects readers


@DATASETS.register("medmnist")
class MedMNISTDataset(MedicalImageDataset):
    """One split of a MedMNIST 2-D ``.npz`` file (see the module docstring for the keys)."""

    def __init__(
        self,
        flag: Optional[str] = None,
        root: Optional[PathLike] = None,
        split: str = "train",
        size: Optional[int] = None,
        download: bool = False,
        path: Optional[PathLike] = None,
        task: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        verify: bool = False,
        mmap: Optional[bool] = None,
        cache_dir: Optional[PathLike] = None,
    ) -> None:
        split = "val" if split == "valid" else split
        if split not in SPLITS:
            raise ConfigError(f"medmnist: split must be one of {', '.join(SPLITS)} (or 'valid'), got {split!r}")
        if size is not None and size not in SIZES:
            raise ConfigError(f"medmnist: size must be one of {SIZES} or null, got {size!r}")
        if path is not None:
            file = Path(path).expanduser()
            stem_flag, stem_size = parse_stem(file)
            flag = flag or stem_flag
            size = size if size is not None else stem_size
        elif flag is not None and root is not None:
            file = Path(root).expanduser() / npz_filename(flag, size)
        else:
            raise ConfigError("medmnist: give 'flag' and 'root' (the directory holding the npz), or 'path' to the file")
        flag = str(flag).lower()
        if flag.endswith("mnist3d"):
            raise ConfigError(f"medmnist: '{flag}' is a 3-D MedMNIST flag; medssl reads the 2-D flags only")
        self.flag, self.size, self.path, self.split = flag, size, file, split
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None

        if not file.is_file():
            if download:
                _download(flag, size, file.parent)
            if not file.is_file():
                where = f"directory {file.parent} does not exist" if not file.parent.is_dir() else f"not in {file.parent}"
                raise DataError(f"MedMNIST file {file.name} not found ({where}). {_how_to_get(flag, size, file.parent)}")
        if verify:
            self._verify_md5()

        self.task, self.class_names, self.description = self._resolve_meta(task, class_names)
        self.num_classes = len(self.class_names)
        self._mmap_file: Optional[Path] = None
        self._images: Optional[np.ndarray] = None
        self._labels = self._load(mmap)
        self.in_channels = 1 if len(self._shape) == 3 else int(self._shape[3])

    # -- metadata ---------------------------------------------------------------------------
    def _verify_md5(self) -> None:
        expected = official_md5(self.flag, self.size)
        if expected is None:
            raise DataError(
                f"{self.path}: verify=true but there is no official md5 for flag '{self.flag}' "
                f"size {self.size or 28} (not an official MedMNIST file); drop 'verify'"
            )
        got = file_md5(self.path)
        if got != expected:
            raise DataError(
                f"{self.path}: md5 {got} differs from the official {expected} of "
                f"{npz_filename(self.flag, self.size)}; the file is corrupt, truncated or not the "
                f"official one. Re-download it from {ZENODO_RECORD}"
            )

    def _resolve_meta(self, task: Optional[str], class_names: Optional[Sequence[str]]) -> Tuple[str, list[str], str]:
        info: Mapping[str, Any] = official_info(self.flag) or {}
        source = f"medmnist.INFO['{self.flag}']"
        if not info:
            sidecar = self.path.with_suffix(".json")
            source = str(sidecar)
            if sidecar.is_file():
                try:
                    info = json.loads(sidecar.read_text())
                except (OSError, ValueError) as exc:
                    raise DataError(f"{sidecar}: cannot read the sidecar JSON: {exc}") from exc
                if not isinstance(info, Mapping):
                    raise DataError(f"{sidecar}: expected a JSON object with keys task, class_names")
            elif task is None or class_names is None:
                raise DataError(
                    f"{self.path}: '{self.flag}' is not an official MedMNIST flag and there is no sidecar "
                    f"{sidecar.name} next to it, so its task and class names are unknown. Write "
                    f'{sidecar.name} with {{"task": ..., "class_names": [...]}} or pass task and class_names'
                )
        raw_task = task if task is not None else info.get("task")
        raw_names = class_names if class_names is not None else info.get("label", info.get("class_names"))
        missing = [k for k, v in (("task", raw_task), ("class_names", raw_names)) if v is None]
        if missing:
            raise DataError(f"{source}: missing {', '.join(missing)}; pass it as an argument or add it there")
        return (
            normalise_task(raw_task, source, DataError),
            _normalise_class_names(raw_names, source),
            str(info.get("description", "")),
        )

    # -- loading ----------------------------------------------------------------------------
    def _load(self, mmap: Optional[bool]) -> np.ndarray:
        ik, lk = f"{self.split}_images", f"{self.split}_labels"
        try:
            with zipfile.ZipFile(self.path) as zf:
                keys = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
                for key in (ik, lk):
                    if key not in keys:
                        have = [s for s in SPLITS if f"{s}_images" in keys and f"{s}_labels" in keys]
                        raise DataError(
                            f"{self.path}: no key '{key}' for split '{self.split}'. The file has splits "
                            f"{have or 'none'} (keys: {', '.join(keys) or 'none'})"
                        )
                shape = _npz_member_shape(zf, ik)
                use_mmap = mmap if mmap is not None else (shape is not None and len(shape) >= 3 and shape[1] >= MMAP_MIN_SIZE)
                with np.load(self.path, allow_pickle=False) as z:
                    labels = z[lk]
                    images = None if use_mmap else z[ik]
                if use_mmap:
                    self._mmap_file = self._ensure_npy_cache(zf, ik)
                    images = self._open_mmap()
        except DataError:
            raise
        except _NPZ_ERRORS as exc:
            raise DataError(f"{self.path}: not a readable .npz file (corrupt or truncated?): {type(exc).__name__}: {exc}") from exc
        expect_c = (official_info(self.flag) or {}).get("n_channels")
        check_image_array(images, f"{self.path} [{ik}]", expect_channels=expect_c)
        self._shape = tuple(images.shape)
        self._images = None if use_mmap else images
        return self._check_labels(labels, len(images), lk)

    def _cache_path(self, zf: zipfile.ZipFile, key: str) -> Path:
        base = self.cache_dir if self.cache_dir is not None else self.path.parent
        return base / f"{self.path.stem}.{key}.{_source_key(self.path, zf, key)}.npy"

    def _ensure_npy_cache(self, zf: zipfile.ZipFile, key: str) -> Path:
        dest = self._cache_path(zf, key)
        if dest.is_file():
            try:
                cached = np.load(dest, mmap_mode="r")
                if cached.shape == _npz_member_shape(zf, key) and cached.dtype == np.uint8:
                    return dest
            except (ValueError, OSError):
                pass  # damaged copy: rewrite it below
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # reported just below
        if not os.access(dest.parent, os.W_OK):
            raise DataError(
                f"{self.path}: memory-mapping needs a .npy copy of '{key}' but {dest.parent} is not writable; "
                "pass 'cache_dir' pointing at a writable directory (or mmap: false to load into RAM)"
            )
        try:
            _copy_member(zf, key, dest)
        except OSError as exc:
            raise DataError(f"{self.path}: could not write the memory-map copy {dest}: {exc}; pass another 'cache_dir'") from exc
        _remove_stale_copies(dest, f"{self.path.stem}.{key}")
        return dest

    def _open_mmap(self) -> np.ndarray:
        assert self._mmap_file is not None
        try:
            return np.load(self._mmap_file, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise DataError(f"{self._mmap_file}: cannot memory-map the cached images: {exc}; delete it to rebuild") from exc

    def _check_labels(self, labels: np.ndarray, n: int, key: str) -> np.ndarray:
        src = f"{self.path} [{key}]"
        if labels.shape[:1] != (n,):
            raise DataError(f"{src}: {labels.shape[0] if labels.ndim else 0} labels for {n} images; they must match")
        if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
            raise DataError(f"{src}: labels must be numeric, got dtype {labels.dtype}")
        if self.task == "multilabel":
            if labels.ndim != 2 or labels.shape[1] != self.num_classes:
                raise DataError(f"{src}: multilabel labels must have shape (N, {self.num_classes}), got {labels.shape}")
            if not np.isin(labels, (0, 1)).all():
                raise DataError(f"{src}: multilabel labels must be 0 or 1")
            out = labels.astype(np.float32)
        else:
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1:
                raise DataError(f"{src}: single-label task '{self.task}' needs labels of shape (N,) or (N, 1), got {labels.shape}")
            if n and (labels.min() < 0 or labels.max() >= self.num_classes or not np.all(labels == np.round(labels))):
                raise DataError(
                    f"{src}: labels must be integers in [0, {self.num_classes}) for {self.num_classes} classes, "
                    f"found values {labels.min()}..{labels.max()}"
                )
            out = labels.astype(np.int64)
        out.flags.writeable = False
        return out

    # -- dataset contract -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._shape[0])

    def labels(self) -> np.ndarray:
        """``(N,)`` int64 class indices, or ``(N, num_classes)`` float32 for multilabel (read-only)."""
        return self._labels

    def _get_image(self, index: int) -> np.ndarray:
        if self._mmap_file is not None:  # large files: one positioned read per item
            reader = getattr(self, "_reader", None)
            if reader is None or reader.pid != os.getpid():  # opened lazily, once per process
                self._reader = reader = RowReader.for_npy(self._mmap_file)
            return as_hwc(reader.read(index))
        assert self._images is not None
        return as_hwc(np.array(self._images[index], copy=True))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._mmap_file is not None:
            # never pickle open files or memory maps into workers; each re-opens the cache
            state["_images"] = None
            state["_reader"] = None
        return state

    def source_files(self) -> list[Path]:
        sidecar = self.path.with_suffix(".json")
        return [self.path] + ([sidecar] if sidecar.is_file() else [])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(flag=self.flag, size=self.size or int(self._shape[1]), path=str(self.path),
                 mmap=self._mmap_file is not None)
        return d


def write_medmnist_npz(
    path: PathLike,
    splits: Mapping[str, Tuple[np.ndarray, np.ndarray]],
    info: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write ``splits`` (``{"train": (images, labels), ...}``) in the official MedMNIST layout.

    ``images``: uint8 ``(N, H, W)`` or ``(N, H, W, 3)``. ``labels``: ``(N,)`` or ``(N, 1)``
    class indices (stored as ``(N, 1)`` uint8/int64) or ``(N, K)`` 0/1 multilabel (stored
    as uint8). With ``info`` (keys ``task``, ``class_names``, optional ``description``) a
    sidecar ``<stem>.json`` is written next to it. Both writes are atomic. Returns the path.
    """
    out = Path(path)
    if out.suffix != ".npz":
        raise ConfigError(f"write_medmnist_npz: {out} must end in .npz")
    arrays: dict[str, np.ndarray] = {}
    for split, (images, labels) in splits.items():
        if split not in SPLITS:
            raise ConfigError(f"write_medmnist_npz: unknown split {split!r}; use {', '.join(SPLITS)}")
        images, labels = np.asarray(images), np.asarray(labels)
        check_image_array(images, f"write_medmnist_npz [{split}_images]")
        if labels.shape[:1] != images.shape[:1]:
            raise DataError(f"write_medmnist_npz [{split}]: {len(labels)} labels for {len(images)} images")
        if labels.ndim == 1:
            labels = labels[:, None]
        dtype = np.uint8 if labels.size == 0 or (labels.min() >= 0 and labels.max() <= 255) else np.int64
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.astype(dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(out, save)
    if info is not None:
        meta = {
            "task": normalise_task(info.get("task"), "write_medmnist_npz info", DataError),
            "class_names": _normalise_class_names(info.get("class_names"), "write_medmnist_npz info"),
        }
        if info.get("description"):
            meta["description"] = str(info["description"])
        atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return out
