"""The ``nifti`` data set on nibabel's real test volumes: canonical orientation (checked
against the raw voxel bytes and against ``nibabel.as_closest_canonical``), axes, slice
ranges, the tissue filter, windows, NIfTI-2, 4-D files and a truncated ``.nii.gz``."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.radiology_helpers import nib, nifti_file, salt_env  # noqa: F401

from medssl.data import open_dataset
from medssl.data.nifti import NiftiSlices
from medssl.errors import DataError


def minmax(a: np.ndarray) -> np.ndarray:
    return np.rint((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)


def folder_with(tmp_path: Path, *files: Path) -> Path:
    d = tmp_path / "vols"
    d.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, d / f.name)
    return d


def raw_anatomical() -> np.ndarray:
    """anatomical.nii's voxels from its bytes: big-endian int16 after vox_offset, Fortran order."""
    p = nifti_file("anatomical.nii")
    hdr = nib.load(str(p)).header
    assert hdr.get_data_dtype() == np.dtype(">i2")
    shape = tuple(int(s) for s in hdr.get_data_shape())
    offset = int(hdr["vox_offset"]) or 352  # 0 here: a single .nii's voxels follow the 348 + 4 header bytes
    data = np.frombuffer(p.read_bytes()[offset:], dtype=">i2", count=int(np.prod(shape))).reshape(shape, order="F")
    slope, inter = hdr.get_slope_inter()
    return data.astype(np.float64) * (1.0 if slope is None else slope) + (0.0 if inter is None else inter)


def test_axial_slices_are_canonical_from_the_raw_bytes(salt_env, tmp_path):
    img = nib.load(str(nifti_file("anatomical.nii")))
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")  # x runs to the left: canonical flips it
    ras = raw_anatomical()[::-1, :, :]
    ds = NiftiSlices(root=folder_with(tmp_path, nifti_file("anatomical.nii")), window="minmax")
    assert len(ds) == 25 and ds.in_channels == 1
    for k in (3, 12, 20):
        expected = minmax(np.rot90(ras[:, :, k]))
        np.testing.assert_array_equal(ds[k][0][..., 0], expected)
    assert ds[0][0].shape == (41, 33, 1)  # rows = anterior-posterior (41), columns = left-right (33)


@pytest.mark.parametrize("axis", ["sagittal", "coronal", "axial"])
def test_every_axis_matches_as_closest_canonical_of_a_permuted_copy(salt_env, tmp_path, axis):
    """The same voxels stored with the axes permuted and one flipped (affine to match):
    every slice must equal nibabel's as_closest_canonical of the original."""
    src = nib.load(str(nifti_file("anatomical.nii")))
    data = np.asarray(src.dataobj)
    perm = np.transpose(data, (2, 0, 1))[:, ::-1, :]
    aff = src.affine[:, [2, 0, 1, 3]].copy()
    aff[:3, 1] *= -1
    aff[:3, 3] = src.affine[:3, :3] @ np.array([data.shape[0] - 1, 0, 0]) + src.affine[:3, 3]
    moved = tmp_path / "m"
    moved.mkdir()
    nib.save(nib.Nifti1Image(np.ascontiguousarray(perm), aff), str(moved / "perm.nii.gz"))
    assert nib.aff2axcodes(aff) != nib.aff2axcodes(src.affine)
    canon = np.asarray(nib.as_closest_canonical(src).dataobj, dtype=np.float64)
    k = {"sagittal": 0, "coronal": 1, "axial": 2}[axis]
    ds = NiftiSlices(root=moved, axis=axis, window="minmax")
    assert len(ds) == canon.shape[k]
    for j in (0, canon.shape[k] // 2, canon.shape[k] - 1):
        plane = np.take(canon, j, axis=k)
        if np.ptp(plane) == 0:
            continue
        np.testing.assert_array_equal(ds[j][0][..., 0], minmax(np.rot90(plane)))


def test_slice_range_and_tissue_filter(salt_env, tmp_path):
    root = folder_with(tmp_path, nifti_file("anatomical.nii"))
    ras = raw_anatomical()[::-1]
    assert len(NiftiSlices(root=root, slice_range=[5, 10])) == 5
    assert len(NiftiSlices(root=root, slice_range=[0.2, 0.6])) == int(np.ceil(0.6 * 25)) - int(np.floor(0.2 * 25))
    assert len(NiftiSlices(root=root, min_tissue=0.99)) == 25  # default threshold: above the minimum (all here)
    frac = (ras > 9444.0).mean(axis=(0, 1))
    ds = NiftiSlices(root=root, min_tissue=0.4, tissue_threshold=9444.0)
    kept = [ds.slice_of(i)[1] for i in range(len(ds))]
    assert kept == [j for j in range(25) if frac[j] >= 0.4] and 0 < len(kept) < 25
    with pytest.raises(DataError, match="no slice of 1 volume"):
        NiftiSlices(root=root, min_tissue=1.0, tissue_threshold=1e9)


def test_default_window_is_the_volume_percentiles(salt_env, tmp_path):
    ras = raw_anatomical()[::-1]
    lo, hi = np.percentile(ras, [0.5, 99.5])
    ds = NiftiSlices(root=folder_with(tmp_path, nifti_file("anatomical.nii")))
    expected = np.rint(np.clip((np.rot90(ras[:, :, 12]) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(ds[12][0][..., 0], expected)


def test_named_and_multi_windows(salt_env, tmp_path):
    ras = raw_anatomical()[::-1]
    root = folder_with(tmp_path, nifti_file("anatomical.nii"))
    ds = NiftiSlices(root=root, window={"center": 100, "width": 200, "function": "LINEAR_EXACT"})
    expected = np.rint(np.clip((np.rot90(ras[:, :, 9]) - 100) / 200 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(ds[9][0][..., 0], expected)
    multi = NiftiSlices(root=root, window="multi")
    assert multi.in_channels == 3 and multi[9][0].shape == (41, 33, 3)


def test_four_d_needs_a_volume_and_nifti2_reads(salt_env, tmp_path):
    root = folder_with(tmp_path, nifti_file("example_nifti2.nii.gz"))
    assert isinstance(nib.load(str(root / "example_nifti2.nii.gz")), nib.Nifti2Image)
    with pytest.raises(DataError, match=r"is 4-D \(shape \(32, 20, 12, 2\): 2 volumes\).*volume: N \(0..1\)"):
        NiftiSlices(root=root)
    ds = NiftiSlices(root=root, volume=1, window="minmax")
    img = nib.load(str(root / "example_nifti2.nii.gz"))
    canon = np.asarray(nib.as_closest_canonical(img).dataobj, dtype=np.float64)[..., 1]
    assert len(ds) == canon.shape[2]
    np.testing.assert_array_equal(ds[6][0][..., 0], minmax(np.rot90(canon[:, :, 6])))
    with pytest.raises(DataError, match="volume 5 asked for but the file holds 2"):
        NiftiSlices(root=root, volume=5)


def test_truncated_nii_gz_names_the_file(salt_env, tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    whole = gzip.compress(nifti_file("anatomical.nii").read_bytes())
    (d / "cut.nii.gz").write_bytes(whole[: len(whole) // 2])
    ds = NiftiSlices(root=d)  # the header is intact: the damage shows when voxels are read
    with pytest.raises(DataError, match=r"cut.nii.gz \(truncated or corrupt"):
        ds[0]
    with pytest.raises(DataError, match=r"cut.nii.gz \(truncated or corrupt"):
        NiftiSlices(root=d, min_tissue=0.1)


def test_not_nifti_is_a_clear_error(salt_env, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.nii").write_text("not a volume")
    with pytest.raises(DataError, match=r"cannot read NIfTI file .*x.nii"):
        NiftiSlices(root=d)


def test_manifest_labels_patients_and_open_dataset(salt_env, tmp_path):
    root = folder_with(tmp_path, nifti_file("anatomical.nii"), nifti_file("reoriented_anat_moved.nii"))
    (root / "m.csv").write_text("path,label,patient\nanatomical.nii,a,p1\nreoriented_anat_moved.nii,b,p2\n")
    ds = open_dataset(root / "m.csv", image_size=32)
    assert isinstance(ds, NiftiSlices) and ds.task == "binary"
    assert len(ds) == 25 + 22 and ds.labels().tolist() == [0] * 25 + [1] * 22
    assert ds[30][0].shape == (32, 32, 1)
    assert sorted(set(ds.patient_index().tolist())) == [0, 1] and ds.summary()["patients"] == 2
    assert isinstance(open_dataset(root, image_size=32), NiftiSlices)


def test_mixed_plane_sizes_need_image_size(salt_env, tmp_path):
    root = folder_with(tmp_path, nifti_file("anatomical.nii"), nifti_file("reoriented_anat_moved.nii"))
    with pytest.raises(DataError, match="different sizes.*image_size"):
        NiftiSlices(root=root)


def test_split_by_patient_info_and_stats_through_the_cli(salt_env, tmp_path, capsys):
    """Six volumes of three patients (manifest column): split, read back per split, info, stats."""
    import medssl
    from medssl.cli import main

    root = tmp_path / "vols"
    root.mkdir()
    rows = ["path,patient,label"]
    for i in range(6):
        shutil.copy(nifti_file("anatomical.nii"), root / f"v{i}.nii")
        rows.append(f"v{i}.nii,subject-{i // 2},{'ad' if i // 2 == 1 else 'cn'}")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", "split", str(root / "m.csv"), "--by", "patient", "--val", "0", "--test", "0.34"]) == 0
    assert "train 2 patient(s) (4 volumes), val 0 patient(s) (0 volumes), test 1 patient(s) (2 volumes)" in capsys.readouterr().out
    train = medssl.open_dataset(root / "m.csv", split="train")
    test = medssl.open_dataset(root / "m.csv", split="test")
    assert isinstance(train, NiftiSlices) and (len(train), len(test)) == (100, 50)
    assert not set(train.patient_names) & set(test.patient_names)
    assert main(["data", "info", str(root / "m.csv"), "--no-checksum"]) == 0
    out = capsys.readouterr().out
    assert "format: nifti" in out and "patients: 3 (images per patient: min 50, median 50, max 50)" in out
    assert "subject-" not in out
    assert main(["data", "stats", str(root / "m.csv"), "--max-images", "10", "--json"]) == 0
    assert '"images": 10' in capsys.readouterr().out


def test_header_scaling_is_applied(salt_env, tmp_path):
    """anatomical.nii's voxels saved again with scl_slope 2, scl_inter -5: the slices are
    the raw voxels times 2 minus 5 (a fixed window shows the physical values)."""
    src = nib.load(str(nifti_file("anatomical.nii")))
    img = nib.Nifti1Image(np.asarray(src.dataobj).astype(np.int16), src.affine)
    img.header.set_slope_inter(2.0, -5.0)
    d = tmp_path / "scaled"
    d.mkdir()
    nib.save(img, str(d / "s.nii"))
    ras = raw_anatomical()[::-1] * 2.0 - 5.0
    ds = NiftiSlices(root=d, window={"center": 10000, "width": 30000, "function": "LINEAR_EXACT"})
    expected = np.rint(np.clip((np.rot90(ras[:, :, 7]) - 10000) / 30000 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(ds[7][0][..., 0], expected)
