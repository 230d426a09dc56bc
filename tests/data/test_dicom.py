"""The ``dicom`` data set on trees of real files (copies of pydicom's test files with
rewritten patient tags): discovery and counted skips, bad input, manifests and labels,
patient-level splits, ``data info``, the registry and ``open_dataset``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.radiology_helpers import dicom_file, dicom_tree, patient, pydicom, rewrite, salt_env  # noqa: F401

from medssl.data import open_dataset
from medssl.data.dicom import DicomDataset
from medssl.data.info import describe_path
from medssl.errors import DataError, DataWarning
from medssl.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]


def test_tree_skips_non_images_with_counted_reasons(salt_env, tmp_path):
    root, paths = dicom_tree(tmp_path / "export", n_patients=3, per_patient=2, junk=True)
    with pytest.warns(DataWarning, match=r"skipped 3 file\(s\).*1 not a DICOM file \(notes.dcm\).*1 DICOMDIR.*1 no pixel data"):
        ds = DicomDataset(root=root)
    assert len(ds) == 6 and ds.task is None and (ds.labels() == -1).all()
    s = ds.summary()
    assert s["patients"] == 3 and s["studies"] == 3
    assert s["images_per_patient"] == {"min": 2, "median": 2.0, "max": 2}
    assert s["modalities"] == {"CT": 6}
    assert s["transfer_syntaxes"] == {"Explicit VR Little Endian": 6}
    why = {Path(u["path"]).name: u["why"] for u in s["unreadable"]}
    assert why == {"notes.dcm": "not a DICOM file", "DICOMDIR": "DICOMDIR (an index of other files, no image)",
                   "report.dcm": "no pixel data (report, presentation state, plan, waveform, ...): SR"}


def test_files_without_suffix_are_found(salt_env, tmp_path):
    src = dicom_file("MR_small.dcm")
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(src, tmp_path / "a" / "b" / "IM0001")
    ds = DicomDataset(root=tmp_path / "a")
    assert len(ds) == 1 and ds[0][0].shape == (64, 64, 1)
    assert isinstance(open_dataset(tmp_path / "a"), DicomDataset)  # detected by the DICM preamble


def test_segmentation_is_skipped_not_read(salt_env, tmp_path):
    shutil.copy(dicom_file("liver_1frame.dcm"), tmp_path / "seg.dcm")
    shutil.copy(dicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    with pytest.warns(DataWarning, match="pixels that are not an image"):
        ds = DicomDataset(root=tmp_path)
    assert len(ds) == 1


def test_only_non_images_is_an_error_saying_what_was_found(salt_env, tmp_path):
    (tmp_path / "x.dcm").write_text("hello")
    shutil.copy(dicom_file("test-SR.dcm"), tmp_path / "sr.dcm")
    with pytest.raises(DataError, match=r"no DICOM image found.*1 not a DICOM file \(x.dcm\); 1 no pixel data"):
        DicomDataset(root=tmp_path)


def test_truncated_pixel_data_names_the_file(salt_env, tmp_path):
    shutil.copy(dicom_file("MR_truncated.dcm"), tmp_path / "t.dcm")
    ds = DicomDataset(root=tmp_path)
    with pytest.raises(DataError, match=r"t.dcm: cannot decode the pixel data .*less than expected"):
        ds[0]


def test_mixed_sizes_need_image_size(salt_env, tmp_path):
    shutil.copy(dicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    shutil.copy(dicom_file("MR_small.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(DataError, match=r"2 different sizes \(128x128 in 1 \(\w+/ct.dcm\), 64x64 in 1 \(\w+/mr.dcm\)\).*image_size"):
        DicomDataset(root=tmp_path)
    ds = DicomDataset(root=tmp_path, image_size=96, channels=3)
    assert [ds[i][0].shape for i in range(2)] == [(96, 96, 3)] * 2


def test_missing_decoder_names_the_pip_package(tmp_path):
    """A fresh interpreter where the JPEG-LS plugins cannot be imported (Pillow has no
    JPEG-LS codec): pydicom has no decoder, and the data set names the package to install
    when it opens, before any pixel is read."""
    shutil.copy(dicom_file("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "jls.dcm")
    code = ("import sys\n"
            "for m in ('libjpeg', 'gdcm', 'jpeg_ls', 'pylibjpeg'): sys.modules[m] = None\n"
            "from medssl.data.dicom import DicomDataset\n"
            f"DicomDataset(root={str(tmp_path)!r})\n")
    env = {**os.environ, "MEDSSL_ID_SALT": "medssl-test-salt-0123456789abcdef", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode != 0
    assert "no decoder installed for the compressed pixel data of 1 file(s) in JPEG-LS Lossless Image " \
           "Compression (1.2.840.10008.1.2.4.80): pip install pylibjpeg pylibjpeg-libjpeg" in res.stderr


def write_csv(path: Path, rows: list[dict]) -> Path:
    cols = list(rows[0])
    path.write_text(",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows))
    return path


def test_manifest_labels_and_user_split(salt_env, tmp_path):
    root, paths = dicom_tree(tmp_path / "ex", n_patients=4, per_patient=2)
    rows = [{"path": str(p.relative_to(root)), "label": "nodule" if i // 2 % 2 else "normal",
             "split": "test" if i // 2 == 3 else "train"} for i, p in enumerate(paths)]
    csv = write_csv(root / "labels.csv", rows)
    train = DicomDataset(csv=csv, split="train")
    assert len(train) == 6 and train.task == "binary" and train.class_names == ["nodule", "normal"]
    assert train.labels().tolist() == [1, 1, 0, 0, 1, 1]
    test = open_dataset(csv, split="test")
    assert isinstance(test, DicomDataset) and len(test) == 2 and test.labels().tolist() == [0, 0]
    assert test.patient_index().tolist() == [0, 0] and len(test.patient_names) == 1


def test_user_split_with_a_patient_in_two_splits_is_refused(salt_env, tmp_path):
    root, paths = dicom_tree(tmp_path / "ex", n_patients=3, per_patient=2)
    rows = [{"path": str(p.relative_to(root)), "split": "train" if i != 1 else "test"} for i, p in enumerate(paths)]
    csv = write_csv(root / "m.csv", rows)
    with pytest.raises(DataError, match=r"1 of 3 patients have images in more than one split.*p-[0-9a-f]{16} "
                                        r"\[test: 1 \(IMG1.dcm\), train: 1 \(IMG0.dcm\)\].*medssl data split ROOT --by patient"):
        DicomDataset(csv=csv, split="train")


def test_manifest_patient_column_overrides_tags(salt_env, tmp_path):
    root, paths = dicom_tree(tmp_path / "ex", n_patients=2, per_patient=2)
    rows = [{"path": str(p.relative_to(root)), "patient": "same", "split": "train" if i < 3 else "val"}
            for i, p in enumerate(paths)]
    with pytest.raises(DataError, match="1 of 1 patients"):
        DicomDataset(csv=write_csv(root / "m.csv", rows), split="val")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "medssl", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_split_by_patient_keeps_each_patient_in_one_split(salt_env, tmp_path):
    root, paths = dicom_tree(tmp_path / "ex", n_patients=10, per_patient=2)
    res = run_cli("data", "split", str(root), "--by", "patient", "--val", "0.2", "--test", "0.2", "--seed", "3")
    assert res.returncode == 0, res.stderr
    assert "train 6 patient(s) (12 objects), val 2 patient(s) (4 objects), test 2 patient(s) (4 objects)" in res.stdout
    doc = json.loads((root / "splits.json").read_text())
    text = (root / "splits.json").read_text()
    assert all(patient(i)["PatientID"] not in text for i in range(10))
    parts = {s: DicomDataset(root=root, split=s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    ids = {s: {pydicom.dcmread(r.path).PatientID for r in parts[s].records} for s in parts}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert sum(len(v) for v in ids.values()) == 10 and len(doc["splits"]["test"]) == 2
    # a different salt matches no pseudonym: refused, not silently empty
    os.environ["MEDSSL_ID_SALT"] = "another-salt-for-the-same-export"
    with pytest.raises(DataError, match="made with another id salt"):
        DicomDataset(root=root, split="train")


def test_cli_split_by_study(salt_env, tmp_path):
    root, paths = dicom_tree(tmp_path / "ex", n_patients=4, per_patient=1)
    # patient 0 gets a second study: study-level splits may separate it, patient-level ones never
    rewrite(dicom_file("CT_small.dcm"), root / "case00" / "later.dcm", {**patient(0), "StudyInstanceUID": "1.2.3.99"})
    res = run_cli("data", "split", str(root), "--by", "study", "--val", "0", "--test", "0.2", "--out", str(tmp_path / "s.json"))
    assert res.returncode == 0, res.stderr
    assert "train 4 study(s)" in res.stdout and "test 1 study(s)" in res.stdout
    assert len(DicomDataset(root=root, split="test", splits=tmp_path / "s.json")) == 1


def test_split_without_a_splits_file_says_how_to_make_one(salt_env, tmp_path):
    root, _ = dicom_tree(tmp_path / "ex", n_patients=2, per_patient=1)
    with pytest.raises(DataError, match=r"no splits file .*splits.json: make patient-level splits first \(medssl data split"):
        DicomDataset(root=root, split="train")


def test_registry_open_dataset_and_info(salt_env, tmp_path):
    root, _ = dicom_tree(tmp_path / "ex", n_patients=2, per_patient=2, junk=True)
    assert "dicom" in DATASETS.names()
    with pytest.warns(DataWarning):
        ds = open_dataset(root)
    assert isinstance(ds, DicomDataset) and len(ds) == 4
    with pytest.warns(DataWarning):
        info = describe_path(root, checksum=False)
    assert info["format"] == "dicom"
    r = info["splits"]["all"]["radiology"]
    assert r["patients"] == 2 and r["skipped"]["not a DICOM file"] == 1
    assert "no splits file" in info["splits"]["train"]["error"]
    res = run_cli("data", "info", str(root), "--no-checksum")
    assert res.returncode == 0, res.stderr
    assert "patients: 2 (images per patient: min 2, median 2, max 2)" in res.stdout
    assert "modalities: CT 4" in res.stdout and "transfer syntaxes: Explicit VR Little Endian 4" in res.stdout
    assert "notes.dcm: not a DICOM file" in res.stdout
    assert "Doe^Jane" not in res.stdout and "MRN" not in res.stdout


def test_bad_config_values(salt_env, tmp_path):
    shutil.copy(dicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    with pytest.raises(Exception, match="unknown window 'lungs'"):
        DicomDataset(root=tmp_path, window="lungs")
    with pytest.raises(Exception, match="multi-window list needs exactly three"):
        DicomDataset(root=tmp_path, window=["lung", "bone"])
    with pytest.raises(Exception, match="frames must be"):
        DicomDataset(root=tmp_path, frames="first")
    with pytest.raises(Exception, match="give 'root'"):
        DicomDataset()


def test_items_survive_pickling_for_workers(salt_env, tmp_path):
    import pickle

    shutil.copy(dicom_file("rtdose.dcm"), tmp_path / "d.dcm")
    ds = DicomDataset(root=tmp_path)
    first = ds[3][0]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[3][0], first)


def test_augment_preview_on_a_dicom_folder(salt_env, tmp_path):
    from medssl.cli import main

    root, _ = dicom_tree(tmp_path / "ex", n_patients=2, per_patient=1, source=["CT_small.dcm", "MR_small.dcm"])
    out = tmp_path / "views.png"
    assert main(["augment", "preview", "gray", "--data", str(root), "--split", "all", "--n", "2", "--views", "2",
                 "--size", "64", "--out", str(out)]) == 2  # native sizes differ: refused, naming image_size
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"data: {{name: dicom, root: {root}, window: lung, image_size: 64}}\n")
    assert main(["augment", "preview", "gray", "--data", str(cfg), "--split", "all", "--n", "2", "--views", "2",
                 "--out", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] >= 2 * 64 and im.size[1] >= 2 * 64


def test_object_without_file_meta_is_still_read(salt_env, tmp_path):
    """CT_small written again without preamble and file meta (as old ACR-NEMA style
    exports are): found, its syntax inferred, the same pixels as the original."""
    from pydicom.filewriter import dcmwrite

    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.preamble = None
    del ds.file_meta
    (tmp_path / "old").mkdir()
    with open(tmp_path / "old" / "IM1", "wb") as fh:
        dcmwrite(fh, ds, implicit_vr=False, little_endian=True, enforce_file_format=False)
    shutil.copy(dicom_file("CT_small.dcm"), tmp_path / "new.dcm")
    (tmp_path / "old" / "README").write_text("exported by a PACS\n")
    with pytest.warns(DataWarning, match=r"1 not a DICOM file \(README\)"):
        old = DicomDataset(root=tmp_path / "old", window="lung")
    assert len(old) == 1 and old.records[0].forced
    new = DicomDataset(csv=write_csv(tmp_path / "m.csv", [{"path": "new.dcm"}]), window="lung")
    np.testing.assert_array_equal(old[0][0], new[0][0])


def test_remembered_headers_follow_a_changed_file(salt_env, tmp_path):
    shutil.copy(dicom_file("CT_small.dcm"), tmp_path / "a.dcm")
    shutil.copy(dicom_file("MR_small.dcm"), tmp_path / "b.dcm")
    assert len(DicomDataset(root=tmp_path, image_size=32)) == 2
    (tmp_path / "b.dcm").write_text("replaced by a text file")
    with pytest.warns(DataWarning, match=r"1 not a DICOM file \(b.dcm\)"):
        assert len(DicomDataset(root=tmp_path, image_size=32)) == 1


def test_split_folders_are_a_user_split_checked_per_patient(salt_env, tmp_path):
    root = tmp_path / "ex"
    for i, part in enumerate(["train", "train", "valid", "test"]):
        rewrite(dicom_file("CT_small.dcm"), root / part / f"case{i}" / "a.dcm", patient(i))
    assert [len(DicomDataset(root=root, split=s)) for s in ("train", "val", "test", "all")] == [2, 1, 1, 4]
    rewrite(dicom_file("CT_small.dcm"), root / "test" / "case0" / "b.dcm", patient(0))  # patient 0 now in train and test
    with pytest.raises(DataError, match=r"1 of 4 patients have images in more than one split"):
        DicomDataset(root=root, split="train")


def test_cli_split_refuses_a_tree_with_split_folders(salt_env, tmp_path, capsys):
    root = tmp_path / "ex"
    rewrite(dicom_file("CT_small.dcm"), root / "train" / "c0" / "a.dcm", patient(0))
    rewrite(dicom_file("CT_small.dcm"), root / "test" / "c1" / "a.dcm", patient(1))
    from medssl.cli import main

    assert main(["data", "split", str(root), "--by", "patient"]) == 2
    assert "has train / val / test folders, which the data set uses as your own split" in capsys.readouterr().err
    assert not (root / "splits.json").exists()
