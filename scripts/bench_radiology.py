"""Radiology reading speed: medssl's ``dicom`` / ``nifti`` data sets against a plain
pydicom / nibabel loop and against MONAI's ``LoadImage``, on the same files.

Every contender does the same work per image: decode, physical values (DICOM:
RescaleSlope / Intercept to HU; NIfTI: canonical RAS+ orientation and the header's
scaling), a window to uint8 (DICOM: lung, -600 / 1500 HU; NIfTI: the volume's
0.5..99.5th percentiles) and a bilinear resize to ``--size``. Files: copies of real files
from pydicom's wheel (``--dicom`` names, ``--copies`` each: a 128 px CT, a 64 px MR, a
512 px JPEG 2000 CT, a 64 px RLE MR) and of nibabel's ``anatomical.nii`` (stored LAS,
so canonical means a flip) as ``.nii`` and ``.nii.gz``. Contenders run round-robin
``--reps`` times; the table gives images/s (median) and the largest difference of each
contender's uint8 output from medssl's (0 = identical pixels).

    python scripts/bench_radiology.py --copies 20 --reps 3 --size 224
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, median, table  # noqa: E402

DICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "693_J2KI.dcm", "MR_small_RLE.dcm")
LUNG = (-600.0, 1500.0)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img, "L").resize((size, size), Image.BILINEAR))


def window_u8(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """DICOM LINEAR window, vectorised (the formula of medssl.data.intensity)."""
    y = (x - (c - 0.5)) / (w - 1.0) + 0.5
    return np.rint(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)


def build_tree(root: Path, names: Sequence[str], copies: int) -> List[Path]:
    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("CT_small.dcm")).parent
    out = []
    for k in range(copies):
        for n in names:
            dst = root / "dicom" / f"s{k:03d}" / n
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / n, dst)
            out.append(dst)
    return out


def build_volumes(root: Path, copies: int) -> List[Path]:
    import nibabel

    src = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"
    out = []
    for k in range(copies):
        d = root / "nifti"
        d.mkdir(parents=True, exist_ok=True)
        plain, packed = d / f"v{k:03d}.nii", d / f"v{k:03d}.nii.gz"
        shutil.copy(src, plain)
        packed.write_bytes(gzip.compress(src.read_bytes()))
        out += [plain, packed]
    return out


# -- DICOM contenders: each returns the uint8 images it made -------------------------------
def dicom_medssl(root: Path, size: int) -> Callable[[], List[np.ndarray]]:
    from medssl.data.dicom import DicomDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = DicomDataset(root=root, window="lung", image_size=size, channels=1)
    return lambda: [ds[i][0][..., 0] for i in range(len(ds))]


def dicom_pydicom(files: List[Path], size: int) -> Callable[[], List[np.ndarray]]:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    def run() -> List[np.ndarray]:
        out = []
        for p in files:
            ds = pydicom.dcmread(p)
            hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
            out.append(resize(window_u8(hu, *LUNG), size))
        return out

    return run


def dicom_monai(files: List[Path], size: int) -> Callable[[], List[np.ndarray]]:
    from monai.transforms import LoadImage

    load = LoadImage(reader="PydicomReader", image_only=True)  # HU, axes swapped (i, j) -> (x, y)

    def run() -> List[np.ndarray]:
        out = []
        for p in files:
            hu = np.asarray(load(str(p)), dtype=np.float64).T
            out.append(resize(window_u8(hu, *LUNG), size))
        return out

    return run


# -- NIfTI contenders ------------------------------------------------------------------------
def nifti_medssl(root: Path, size: int) -> Callable[[], List[np.ndarray]]:
    from medssl.data.nifti import NiftiSlices

    ds = NiftiSlices(root=root, image_size=size)
    return lambda: [ds[i][0][..., 0] for i in range(len(ds))]


def _percentile_slices(vol: np.ndarray, size: int) -> List[np.ndarray]:
    lo, hi = np.percentile(vol[np.isfinite(vol)], (0.5, 99.5))
    out = []
    for k in range(vol.shape[2]):
        plane = np.rot90(vol[:, :, k])
        u8 = np.rint(np.clip((plane - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
        out.append(resize(u8, size))
    return out


def nifti_nibabel(files: List[Path], size: int) -> Callable[[], List[np.ndarray]]:
    import nibabel

    def run() -> List[np.ndarray]:
        out: List[np.ndarray] = []
        for p in files:
            vol = nibabel.as_closest_canonical(nibabel.load(str(p))).get_fdata(dtype=np.float32)
            out += _percentile_slices(vol, size)
        return out

    return run


def nifti_monai(files: List[Path], size: int) -> Callable[[], List[np.ndarray]]:
    from monai.transforms import EnsureChannelFirst, LoadImage, Orientation

    load, chan, ras = LoadImage(reader="NibabelReader", image_only=True), EnsureChannelFirst(), Orientation("RAS")

    def run() -> List[np.ndarray]:
        out: List[np.ndarray] = []
        for p in files:
            vol = np.asarray(ras(chan(load(str(p))))[0], dtype=np.float32)
            out += _percentile_slices(vol, size)
        return out

    return run


def agreement(ref: List[np.ndarray], other: List[np.ndarray]) -> int:
    """Largest |difference| between two lists of uint8 images (same order)."""
    if len(ref) != len(other):
        return -1
    return max(int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(ref, other))


def bench(contenders: Dict[str, Callable[[], List[np.ndarray]]], reps: int) -> List[Tuple[str, float, int, int]]:
    outputs = {k: fn() for k, fn in contenders.items()}  # also the warm-up (page cache, imports)
    times = interleaved(contenders, reps=reps, warmup=0)
    ref = outputs["medssl"]
    return [(k, len(outputs[k]) / median(times[k]), len(outputs[k]), agreement(ref, outputs[k])) for k in contenders]


def main(argv: Sequence[str] = ()) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=20, help="copies of each file (default 20)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--dicom", nargs="+", default=list(DICOM_FILES))
    ap.add_argument("--smoke", action="store_true", help="1 copy, 1 rep, 64 px: seconds")
    args = ap.parse_args(list(argv))
    if args.smoke:
        args.copies, args.reps, args.size = 1, 1, 64
    os.environ.setdefault("MEDSSL_ID_SALT", "bench-radiology-salt-not-secret")
    lines = [header("Radiology reading: medssl vs pydicom / nibabel loops vs MONAI LoadImage")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = build_tree(root, args.dicom, args.copies)
        vols = build_volumes(root, args.copies)
        files.sort()
        vols.sort()
        rows = bench({"medssl": dicom_medssl(root / "dicom", args.size), "pydicom loop": dicom_pydicom(files, args.size),
                      "MONAI LoadImage (PydicomReader)": dicom_monai(files, args.size)}, args.reps)
        lines += [f"DICOM: {len(files)} files ({', '.join(args.dicom)} x {args.copies}), lung window, {args.size} px", "",
                  table(["reader", "images/s", "images", "max |diff| vs medssl"],
                        [(k, f"{r:.1f}", n, d) for k, r, n, d in rows]), ""]
        rows = bench({"medssl": nifti_medssl(root / "nifti", args.size), "nibabel loop": nifti_nibabel(vols, args.size),
                      "MONAI LoadImage (NibabelReader) + Orientation": nifti_monai(vols, args.size)}, args.reps)
        lines += [f"NIfTI: {len(vols)} volumes (anatomical.nii 33x41x25, as .nii and .nii.gz, x {args.copies}), "
                  f"every axial slice, percentile window, {args.size} px", "",
                  table(["reader", "slices/s", "slices", "max |diff| vs medssl"],
                        [(k, f"{r:.1f}", n, d) for k, r, n, d in rows]), ""]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
