"""A small embedded sample in the real on-disk formats, built offline from real images.

``write_sample(out_dir)`` (CLI: ``medssl data sample OUT_DIR``) writes::

    OUT/pcam/      PCAM HDF5 train/valid/test: 96 x 96 tiles of the scikit-image IHC image
    OUT/medmnist/  ihcstain.npz (+ ihcstain.json sidecar): MedMNIST layout, 28 x 28 RGB, 3 classes
    OUT/stl10/     stl10_binary/: 96 x 96 crops of scikit-image's natural photographs
    OUT/folder/    <class>/*.png 64 x 64 IHC tiles + labels.csv (path,label,split)
    OUT/README.md  what each file is, where its pixels come from, how labels are defined

Pixels come only from images shipped inside the scikit-image wheel (read from its data
folder directly, so nothing is ever downloaded). Labels are computed from the pixels:

* Stain maps: ``skimage.color.rgb2hed`` gives the DAB channel (brown immunostain); a pixel
  is DAB-positive when that value exceeds ``DAB_THRESHOLD`` (0.06). A pixel is tissue
  when its mean optical density ``-log((rgb + 1) / 256)`` over RGB exceeds
  ``TISSUE_OD`` (0.15).
* PCAM label (as in PCAM, decided by the centre 32 x 32 region only): 1 (``tumor``
  slot, here "DAB-positive") when at least half of the centre pixels are DAB-positive.
* Stain class (MedMNIST and folder samples): ``background`` when under half of the tile
  is tissue, else ``dab_positive`` when at least 30 % of it is DAB-positive, else
  ``dab_negative_tissue`` (haematoxylin-stained tissue without DAB).

Train / validation / test tiles come from disjoint rectangles of the IHC image
(:data:`REGIONS`), so no pixel is shared between splits; the rectangles were chosen so
every split holds every class. The seed picks the per-tile D4 orientation, the 1:1
balanced PCAM subsample and the STL-10 crops; equal seeds give equal files.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from medssl.data.medmnist import write_medmnist_npz
from medssl.data.pcam import write_pcam_split
from medssl.data.stl10 import write_stl10_split
from medssl.errors import DataError
from medssl.fileio import PathLike

DAB_THRESHOLD = 0.06
TISSUE_OD = 0.15
CENTRE_POSITIVE_FRACTION = 0.5
TISSUE_FRACTION = 0.5
DAB_TILE_FRACTION = 0.3
STAIN_CLASSES = ("background", "dab_negative_tissue", "dab_positive")
PCAM_STRIDE = 16
MEDMNIST_TILE, MEDMNIST_STRIDE = 56, 14  # 56 px tiles, 2 x 2 area-averaged to 28 px
FOLDER_TILE, FOLDER_STRIDE = 64, 32
MEDMNIST_NAME = "ihcstain"

# (y0, y1, x0, x1) rectangles of the 512 x 512 IHC image per split; tiles lie wholly
# inside one rectangle.
REGIONS: Dict[str, List[Tuple[int, int, int, int]]] = {
    "train": [(0, 256, 0, 512), (256, 512, 192, 288)],
    "val": [(256, 512, 0, 192)],
    "test": [(256, 512, 288, 512)],
}

STL_CLASSES = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")
STL_EXTRA_UNLABELED = ("hubble_deep_field.jpg",)
STL_SHORT_SIDE = 224  # photos are resized so that a 96 px crop shows part of the scene
STL_TRAIN_FRACTION = 0.55  # of the long axis; the rest is the test region
STL_TRAIN_PER_CLASS, STL_TEST_PER_CLASS, STL_UNLABELED = 8, 4, 40


def packaged_image(filename: str) -> np.ndarray:
    """An RGB uint8 image from scikit-image's own data folder (never downloads)."""
    import skimage
    from PIL import Image

    path = Path(skimage.__file__).parent / "data" / filename
    if not path.is_file():
        raise DataError(
            f"the sample needs {filename}, which this scikit-image install ({skimage.__version__}) "
            f"does not ship in {path.parent}; reinstall scikit-image"
        )
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def stain_maps(rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(dab_positive, tissue)`` boolean maps (H, W) of an RGB uint8 image (see module doc)."""
    from skimage.color import rgb2hed

    dab = rgb2hed(rgb)[..., 2] > DAB_THRESHOLD
    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0).mean(axis=-1)
    return dab, od > TISSUE_OD


def pcam_label(dab: np.ndarray, y: int, x: int, size: int = 96) -> int:
    """1 when >= half of the centre (size/3)^2 region of the tile at (y, x) is DAB-positive."""
    c = size // 3
    return int(dab[y + c : y + 2 * c, x + c : x + 2 * c].mean() >= CENTRE_POSITIVE_FRACTION)


def stain_class(dab: np.ndarray, tissue: np.ndarray, y: int, x: int, size: int) -> int:
    """Index into :data:`STAIN_CLASSES` of the size x size tile at (y, x)."""
    if tissue[y : y + size, x : x + size].mean() < TISSUE_FRACTION:
        return 0
    return 2 if dab[y : y + size, x : x + size].mean() >= DAB_TILE_FRACTION else 1


def tile_positions(rects: Sequence[Tuple[int, int, int, int]], size: int, stride: int) -> Iterator[Tuple[int, int]]:
    """Top-left corners of size x size tiles on a stride grid, wholly inside one rectangle."""
    for y0, y1, x0, x1 in rects:
        for y in range(y0, y1 - size + 1, stride):
            for x in range(x0, x1 - size + 1, stride):
                yield y, x


def d4(img: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` (0..7) of the dihedral group: rotate by 90*(k % 4) degrees, then flip if k >= 4."""
    out = np.rot90(img, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def _pcam_split(ihc: np.ndarray, dab: np.ndarray, split: str, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, Dict[str, list]]:
    pos = list(tile_positions(REGIONS[split], 96, PCAM_STRIDE))
    labels = np.array([pcam_label(dab, y, x) for y, x in pos])
    by_class = [np.flatnonzero(labels == c) for c in (0, 1)]
    if min(len(i) for i in by_class) == 0:  # REGIONS guarantee both; guard against drift
        raise DataError(f"sample: the PCAM {split} region lost a class; check REGIONS")
    # Balance 1:1 like PCAM itself: keep the minority class, subsample the majority.
    cap = min(len(i) for i in by_class)
    keep = np.sort(np.concatenate([rng.permutation(i)[:cap] for i in by_class]))
    ks = rng.integers(0, 8, size=len(keep))
    images = np.stack([d4(ihc[pos[i][0] : pos[i][0] + 96, pos[i][1] : pos[i][1] + 96], int(k)) for i, k in zip(keep, ks)])
    meta = {
        "coord_y": [pos[i][0] for i in keep],
        "coord_x": [pos[i][1] for i in keep],
        "d4": [int(k) for k in ks],
        "source": ["skimage/data/ihc.png"] * len(keep),
    }
    return images, labels[keep], meta


def _stain_tiles(ihc: np.ndarray, dab: np.ndarray, tissue: np.ndarray, split: str, size: int, stride: int) -> Tuple[np.ndarray, np.ndarray]:
    pos = list(tile_positions(REGIONS[split], size, stride))
    images = np.stack([ihc[y : y + size, x : x + size] for y, x in pos])
    labels = np.array([stain_class(dab, tissue, y, x, size) for y, x in pos], dtype=np.int64)
    return images, labels


def _area_halve(images: np.ndarray) -> np.ndarray:
    n, h, w, c = images.shape
    small = images.reshape(n, h // 2, 2, w // 2, 2, c).astype(np.float32).mean(axis=(2, 4))
    return np.rint(small).astype(np.uint8)


def _resize_short_side(img: np.ndarray, short: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    scale = short / min(h, w)
    size = (max(short, round(w * scale)), max(short, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))


def _random_crops(img: np.ndarray, n: int, rng: np.random.Generator, region: Tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = region
    ys = rng.integers(y0, y1 - 96 + 1, size=n)
    xs = rng.integers(x0, x1 - 96 + 1, size=n)
    return np.stack([img[y : y + 96, x : x + 96] for y, x in zip(ys, xs)])


def _stl_regions(img: np.ndarray) -> Dict[str, Tuple[int, int, int, int]]:
    h, w = img.shape[:2]
    if w >= h:
        cut = int(w * STL_TRAIN_FRACTION)
        return {"train": (0, h, 0, cut), "test": (0, h, cut, w)}
    cut = int(h * STL_TRAIN_FRACTION)
    return {"train": (0, cut, 0, w), "test": (cut, h, 0, w)}


def _counts(labels: np.ndarray, names: Sequence[str]) -> Dict[str, int]:
    return {n: int((labels == i).sum()) for i, n in enumerate(names)}


def _write_pcam(out: Path, ihc: np.ndarray, dab: np.ndarray, rng: np.random.Generator) -> Dict[str, Any]:
    summary = {}
    for split, disk in (("train", "train"), ("val", "valid"), ("test", "test")):
        images, labels, meta = _pcam_split(ihc, dab, split, rng)
        write_pcam_split(out, disk, images, labels, meta)
        summary[disk] = _counts(labels, ("normal", "tumor"))
    return summary


def _write_medmnist(out: Path, ihc: np.ndarray, dab: np.ndarray, tissue: np.ndarray) -> Dict[str, Any]:
    splits, summary = {}, {}
    for split in ("train", "val", "test"):
        images, labels = _stain_tiles(ihc, dab, tissue, split, MEDMNIST_TILE, MEDMNIST_STRIDE)
        splits[split] = (_area_halve(images), labels)
        summary[split] = _counts(labels, STAIN_CLASSES)
    info = {
        "task": "multiclass",
        "class_names": list(STAIN_CLASSES),
        "description": (
            "28x28 RGB tiles (56x56 IHC colon tiles from scikit-image's ihc.png, 2x2 area-averaged); "
            "label = stain class from HED colour deconvolution (see medssl.data.sample)"
        ),
    }
    write_medmnist_npz(out / f"{MEDMNIST_NAME}.npz", splits, info)
    return summary


def _write_folder(out: Path, ihc: np.ndarray, dab: np.ndarray, tissue: np.ndarray) -> Dict[str, Any]:
    from PIL import Image

    rows, summary = [], {}
    for split in ("train", "val", "test"):
        images, labels = _stain_tiles(ihc, dab, tissue, split, FOLDER_TILE, FOLDER_STRIDE)
        summary[split] = _counts(labels, STAIN_CLASSES)
        for i, (img, lab) in enumerate(zip(images, labels)):
            rel = f"{STAIN_CLASSES[lab]}/{split}_{i:03d}.png"
            (out / STAIN_CLASSES[lab]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out / rel)
            rows.append((rel, STAIN_CLASSES[lab], split))
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    return summary


def _write_stl10(out: Path, rng: np.random.Generator) -> Dict[str, Any]:
    names = [Path(f).stem for f in STL_CLASSES]
    parts: Dict[str, List[np.ndarray]] = {"train": [], "test": [], "unlabeled": []}
    labels: Dict[str, List[int]] = {"train": [], "test": []}
    photos = {f: _resize_short_side(packaged_image(f), STL_SHORT_SIDE) for f in STL_CLASSES + STL_EXTRA_UNLABELED}
    for c, f in enumerate(STL_CLASSES):
        regions = _stl_regions(photos[f])
        for split, n in (("train", STL_TRAIN_PER_CLASS), ("test", STL_TEST_PER_CLASS)):
            parts[split].append(_random_crops(photos[f], n, rng, regions[split]))
            labels[split] += [c] * n
    per_photo = -(-STL_UNLABELED // len(photos))
    for f, img in photos.items():
        h, w = img.shape[:2]
        parts["unlabeled"].append(_random_crops(img, per_photo, rng, (0, h, 0, w)))
    unl = np.concatenate(parts["unlabeled"])[:STL_UNLABELED]
    write_stl10_split(out, "train", np.concatenate(parts["train"]), labels["train"], class_names=names)
    write_stl10_split(out, "test", np.concatenate(parts["test"]), labels["test"])
    write_stl10_split(out, "unlabeled", unl)
    return {
        "train": _counts(np.array(labels["train"]), names),
        "test": _counts(np.array(labels["test"]), names),
        "unlabeled": {"unlabelled": len(unl)},
    }


def write_sample(out_dir: PathLike, seed: int = 0) -> Dict[str, Any]:
    """Write the embedded sample to ``out_dir`` (created if needed); returns per-format
    class counts per split, ``{"pcam": {"train": {"normal": n, ...}, ...}, ...}``."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ihc = packaged_image("ihc.png")
    dab, tissue = stain_maps(ihc)
    summary = {
        "pcam": _write_pcam(out / "pcam", ihc, dab, rng),
        "medmnist": _write_medmnist(out / "medmnist", ihc, dab, tissue),
        "folder": _write_folder(out / "folder", ihc, dab, tissue),
        "stl10": _write_stl10(out / "stl10", rng),
    }
    (out / "README.md").write_text(_readme(summary, seed))
    return summary


SAMPLE_README_TITLE = "# medssl embedded sample"


def embedded_sample_root(path: PathLike) -> Optional[Path]:
    """The folder written by :func:`write_sample` that holds ``path`` (a file or a dataset
    folder inside it), found by its README.md; ``None`` for any other data."""
    p = Path(path).expanduser().absolute()
    for folder in [p, *p.parents][:4]:  # OUT/, OUT/pcam/, OUT/stl10/stl10_binary/<file>
        readme = folder / "README.md"
        try:
            if readme.is_file() and readme.read_text(encoding="utf-8", errors="replace").startswith(SAMPLE_README_TITLE):
                return folder
        except OSError:
            continue
    return None


def _table(counts: Dict[str, Dict[str, int]]) -> str:
    return "; ".join(f"{split}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for split, c in counts.items())


def _readme(summary: Dict[str, Any], seed: int) -> str:
    stl_names = ", ".join(Path(f).stem for f in STL_CLASSES)
    return f"""{SAMPLE_README_TITLE} (seed {seed})

Written by `medssl data sample` from real images shipped inside the scikit-image wheel
(`skimage/data/`); nothing was downloaded. Each folder uses the real on-disk format of
its dataset, so every loader, `medssl data info` and `medssl data stats` work on it.
Labels are computed from the pixels as described below: they are real properties of the
images, but *not* the labels of PCAM, MedMNIST or STL-10.

Stain maps (IHC image `ihc.png`, 512 x 512, immunohistochemistry of colon tissue, DAB
brown + haematoxylin blue): `skimage.color.rgb2hed` DAB channel > {DAB_THRESHOLD} marks a
DAB-positive pixel; mean optical density -log((RGB + 1) / 256) > {TISSUE_OD} marks tissue.
Splits come from disjoint rectangles (y0, y1, x0, x1) of the image, so no pixel is
shared between splits: {REGIONS}.

## pcam/
`camelyonpatch_level_2_split_{{train,valid,test}}_{{x,y,meta}}` in the official PCAM layout
(`x`: N x 96 x 96 x 3 uint8, `y`: N x 1 x 1 x 1 uint8). Tiles: 96 x 96 on a
{PCAM_STRIDE}-px grid, each turned by a seeded D4 element (column `d4` of the meta CSV,
with the tile's `coord_y`, `coord_x`). Label 1 (`tumor` slot = "DAB-positive centre")
when at least {CENTRE_POSITIVE_FRACTION:.0%} of the centre 32 x 32 pixels are DAB-positive, else 0.
Classes balanced 1:1 (as in PCAM) by a seeded subsample of the majority class. Counts: {_table(summary["pcam"])}.

## medmnist/
`{MEDMNIST_NAME}.npz` in the MedMNIST layout (`{{train,val,test}}_images` N x 28 x 28 x 3 uint8,
`_labels` N x 1) and its sidecar `{MEDMNIST_NAME}.json` (task, class names). Tiles:
{MEDMNIST_TILE} x {MEDMNIST_TILE} on a {MEDMNIST_STRIDE}-px grid, 2 x 2 area-averaged to 28 x 28. Label (3 classes):
`background` when under {TISSUE_FRACTION:.0%} of the tile is tissue, else `dab_positive` when at
least {DAB_TILE_FRACTION:.0%} of it is DAB-positive, else `dab_negative_tissue`.
Counts: {_table(summary["medmnist"])}.

## folder/
One folder per class (same 3 stain classes) of {FOLDER_TILE} x {FOLDER_TILE} PNG tiles on a
{FOLDER_STRIDE}-px grid, plus `labels.csv` with columns `path,label,split`.
Counts: {_table(summary["folder"])}.

## stl10/
`stl10_binary/{{train,test,unlabeled}}_X.bin`, `{{train,test}}_y.bin`, `class_names.txt` in
the official STL-10 binary layout. Images: 96 x 96 crops at seeded random positions of
scikit-image's photographs ({stl_names}; plus hubble_deep_field for the unlabelled split),
each resized so its short side is {STL_SHORT_SIDE} px. Class = the source photograph (these
are not STL-10's classes). Train crops come from the first {STL_TRAIN_FRACTION:.0%} of each
photo's long axis, test crops from the rest; unlabelled crops from anywhere.
Counts: {_table(summary["stl10"])}.
"""
