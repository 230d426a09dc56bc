"""Tiles of whole-slide images, read from the shards of ``medssl data tile``.

``{"name": "wsi_tiles", "root": DIR, "split": "all"|"train"|"val"|"test", "labels": CSV,
"tiles_per_slide": N}``. Construction reads only the manifest (and ``splits.json`` for a
split, the label CSV when given): the index of a tile is found from the shard tile
counts, so a cohort of millions of tiles opens in milliseconds and holds 8 bytes per tile.
Shard files are opened lazily in each process (a changed PID after a fork means fresh
handles, as in :mod:`medssl.data.pcam`), at most :data:`MAX_OPEN` at a time.

Without ``labels`` every tile is unlabelled (for pretraining). With a CSV of slide
labels (columns ``slide,label``) every tile inherits its slide's label, which makes the
set usable by ``medssl transfer``; :meth:`WSITiles.slide_index` lets the report turn
tile scores into slide scores.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from medssl.data.base import MedicalImageDataset
from medssl.errors import DataError
from medssl.fileio import PathLike
from medssl.hdf5 import local_dataset
from medssl.registry import DATASETS
from medssl.wsi.manifest import load_manifest
from medssl.wsi.shards import read_meta
from medssl.wsi.splits import SPLITS, read_splits
from medssl.text import name_list, no_such_file

MAX_OPEN = 16  # shard handles kept open per process (a worker reads few shards at a time)


def find_slide_labels(labels: PathLike, root: Path) -> Path:
    """The slide-label CSV a config names: the path as given (a relative one against the
    working directory, like every path in a config), else, for a relative path, inside
    the tiling directory ``root`` (where ``medssl data tile`` output lives). DataError
    naming every absolute path tried."""
    p = Path(labels).expanduser()
    if p.is_file() or p.is_absolute():
        return p
    if (root / p).is_file():
        return root / p
    raise DataError(f"slide labels {labels}: no such file (looked at {os.path.abspath(p)}, relative to the working "
                    f"directory, and at {os.path.abspath(root / p)}, in the tiling directory); give a CSV with "
                    "columns slide,label")


def read_slide_labels(path: PathLike) -> Tuple[Dict[str, int], List[str]]:
    """``({slide id: class index}, class names)`` from a CSV with ``slide,label`` columns.

    Integer labels 0..K-1 are used as given (names "0".."K-1"); other labels are class
    names, numbered in sorted order.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(no_such_file("slide labels", p, "give a CSV with columns slide,label"))
    try:
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"slide labels {p}: cannot read the CSV ({exc})") from exc
    if not rows or not {"slide", "label"} <= set(header):
        raise DataError(f"slide labels {p}: expected a header with columns slide,label and at least one row; "
                        f"found columns {sorted(header)}")
    raw: Dict[str, str] = {}
    for i, row in enumerate(rows, start=2):
        sid, lab = (row["slide"] or "").strip(), (row["label"] or "").strip()
        if not sid or not lab:
            raise DataError(f"slide labels {p}: line {i} has an empty slide or label")
        if sid in raw and raw[sid] != lab:
            raise DataError(f"slide labels {p}: slide {sid!r} has two labels ({raw[sid]!r}, {lab!r}); keep one")
        raw[sid] = lab
    values = sorted(set(raw.values()))
    if all(v.isdigit() for v in values):
        k = max(int(v) for v in values) + 1
        return {s: int(v) for s, v in raw.items()}, [str(i) for i in range(k)]
    index = {v: i for i, v in enumerate(values)}
    return {s: index[v] for s, v in raw.items()}, values


class WSITiles(MedicalImageDataset):
    """Tiles of a ``medssl data tile`` output directory; items are ``(tile (T, T, 3) uint8,
    label)`` with label ``-1`` unless slide ``labels`` were given."""

    in_channels = 3

    def __init__(self, root: PathLike, split: str = "all", labels: Optional[PathLike] = None,
                 tiles_per_slide: Optional[int] = None) -> None:
        self.root = Path(root).expanduser()
        manifest = load_manifest(self.root)
        done = {sid: rec for sid, rec in manifest["slides"].items() if rec.get("status") == "done"}
        self.split = str(split).lower()
        if self.split in ("all", ""):
            self.split, wanted = "all", sorted(done)
        elif self.split in SPLITS or self.split == "valid":
            self.split = "val" if self.split == "valid" else self.split
            wanted = read_splits(self.root)[self.split]
            missing = [s for s in wanted if s not in done]
            if missing:
                raise DataError(f"{self.root}/splits.json: slide(s) {name_list(missing[:5])} of split {self.split} "
                                "are not tiled (done) in the manifest; re-run medssl data split")
        else:
            raise DataError(f"wsi_tiles: unknown split {split!r}; use all, train, val or test")
        if tiles_per_slide is not None and int(tiles_per_slide) < 1:
            raise DataError(f"wsi_tiles: tiles_per_slide must be at least 1 (or null), got {tiles_per_slide}")
        self.tiles_per_slide = None if tiles_per_slide is None else int(tiles_per_slide)
        self.slide_names: List[str] = list(wanted)
        shard_files: List[Path] = []
        sizes: List[int] = []
        shard_slide: List[int] = []
        for k, sid in enumerate(self.slide_names):
            for sh in done[sid]["shards"]:
                shard_files.append(self.root / sh["file"])
                sizes.append(int(sh["tiles"]))
                shard_slide.append(k)
        self.shard_files = shard_files
        self.shard_sizes = np.asarray(sizes, dtype=np.int64)
        self.shard_slide = np.asarray(shard_slide, dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self.shard_sizes)]).astype(np.int64)
        self.tile = int(manifest["params"]["tile"])
        if shard_files:
            first = shard_files[0]
            if not first.is_file():
                raise DataError(f"{first}: shard listed in {self.root}/manifest.json is missing; re-tile the slide "
                                "(delete its entry or the directory) or restore the file")
            self.tile = read_meta(first)["tile"]
        self.image_shape = (self.tile, self.tile, 3)
        self._labels = np.full(len(self), -1, dtype=np.int64)
        self.task: Optional[str] = None
        self.num_classes = 0
        self.class_names: Tuple[str, ...] = ()
        self.labels_path = find_slide_labels(labels, self.root) if labels is not None else None
        if self.labels_path is not None:
            self._attach_labels(self.labels_path)
        self._reset_handles()

    def _attach_labels(self, labels: PathLike) -> None:
        by_slide, names = read_slide_labels(labels)
        missing = [s for s in self.slide_names if s not in by_slide]
        if missing:
            raise DataError(f"slide labels {labels}: no label for {len(missing)} slide(s) of {self.root} split "
                            f"{self.split} ({name_list(missing[:5])}{', ...' if len(missing) > 5 else ''}); add them")
        present = sorted({names[v] for v in by_slide.values()})
        if len(present) < 2:
            raise DataError(f"slide labels {labels}: only one class ({present[0]}); a labelled set needs two or more")
        per_slide = np.asarray([by_slide[s] for s in self.slide_names], dtype=np.int64)
        self._labels = per_slide[self.slide_index()]
        self.num_classes = len(names)
        self.class_names = tuple(names)
        self.task = "binary" if len(names) == 2 else "multiclass"

    # ------------------------------------------------------------------ handles
    def _reset_handles(self) -> None:
        self._handles: "OrderedDict[int, Any]" = OrderedDict()
        self._pid: Optional[int] = None

    def _shard(self, s: int) -> Any:
        import h5py

        if self._pid != os.getpid():  # inherited through fork: never use or close the parent's
            self._handles, self._pid = OrderedDict(), os.getpid()
        h = self._handles.get(s)
        if h is None:
            path = self.shard_files[s]
            try:
                f = h5py.File(path, "r")
            except OSError as exc:
                raise DataError(f"{path}: cannot open the tile shard ({exc}); it is missing or damaged: re-tile "
                                "with medssl data tile --resume after deleting it") from exc
            try:
                x = local_dataset(f, "x", path)
            except DataError:
                f.close()
                raise
            if x is None:
                f.close()
                raise DataError(f"{path}: not a medssl tile shard (no dataset 'x'); delete it and re-run "
                                "`medssl data tile --resume`")
            h = (f, x)
            self._handles[s] = h
            if len(self._handles) > MAX_OPEN:
                _, (old, _) = self._handles.popitem(last=False)
                old.close()
        else:
            self._handles.move_to_end(s)
        return h[1]

    def close(self) -> None:
        """Close this process's shard handles (reopened on the next access)."""
        if self._pid == os.getpid():
            for f, _ in self._handles.values():
                f.close()
        self._reset_handles()

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_handles=OrderedDict(), _pid=None)
        return state

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> Tuple[int, int]:
        """``(shard, row)`` of tile ``index``."""
        s = int(np.searchsorted(self._starts, index, side="right")) - 1
        return s, index - int(self._starts[s])

    def _get_image(self, index: int) -> np.ndarray:
        s, row = self.locate(index)
        try:
            return np.asarray(self._shard(s)[row])
        except OSError as exc:
            raise DataError(f"{self.shard_files[s]}: cannot read tile {row} (truncated or damaged shard): {exc}") from exc

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def source_files(self) -> List[Path]:
        """The manifest, the split and label files used, then every shard."""
        files = [self.root / "manifest.json"]
        if self.split != "all":
            files.append(self.root / "splits.json")
        if self.labels_path is not None:
            files.append(self.labels_path)
        return files + list(self.shard_files)

    def slide_index(self) -> np.ndarray:
        """(N,) int64: the position in :attr:`slide_names` of each tile's slide."""
        return np.repeat(self.shard_slide, self.shard_sizes)

    def tile_meta(self, index: int) -> Dict[str, Any]:
        """Where tile ``index`` comes from: slide, level, x, y (level-0 px), mpp, tissue."""
        s, row = self.locate(index)
        rec = read_meta(self.shard_files[s])["meta"][row]
        return {"slide": rec["slide"].decode("utf-8"), "level": int(rec["level"]), "x": int(rec["x"]),
                "y": int(rec["y"]), "mpp": float(rec["mpp"]), "tissue": float(rec["tissue"])}

    def make_sampler(self, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                     num_workers: int = 0) -> Any:
        """The training sampler: shards split across ranks and workers, slides balanced by
        ``tiles_per_slide`` (see :mod:`medssl.data.wsi_sampler`)."""
        from medssl.data.wsi_sampler import ShardSampler

        return ShardSampler(self.shard_sizes, self.shard_slide, batch_size, seed=seed, rank=rank,
                            world_size=world_size, num_workers=num_workers, tiles_per_slide=self.tiles_per_slide)

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(slides=len(self.slide_names), shards=len(self.shard_files), image_shape=list(self.image_shape))
        return d


@DATASETS.register("wsi_tiles")
def build_wsi_tiles(root: PathLike, split: str = "all", labels: Optional[PathLike] = None,
                    tiles_per_slide: Optional[int] = None) -> WSITiles:
    """Registry builder: ``{"name": "wsi_tiles", "root": DIR, "split": ..., "labels": CSV,
    "tiles_per_slide": N}``."""
    return WSITiles(root, split, labels, tiles_per_slide)
