"""Data that would give a silently wrong result: refused, or read right and said so.

An .npz whose .npy header declares more than the file holds, class folders that are
links, integer labels that leave classes empty, non-integer labels, and train / test sets
that share images.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.harness import assert_clean_cli_error, run_cli, write_yaml


def _member(arr_header_shape: tuple, dtype: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                               "shape": arr_header_shape})
    return buf.getvalue() + payload


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize("key", ["train_images", "train_labels"])
@pytest.mark.parametrize("command", [["data", "stats"], ["data", "info"]])
def test_an_npy_header_declaring_more_than_the_file_holds_is_refused_before_allocating(
        sample_dir: Path, tmp_path: Path, key: str, command: list) -> None:
    """A few KB declaring 10^9 x 28 x 28 x 3 images (2.35 TB): numpy would allocate it all
    first (ArrayMemoryError); refused naming the file, key, shape and both sizes."""
    src = sample_dir / "medmnist" / "ihcstain.npz"
    bad = tmp_path / "bomb.npz"
    with np.load(src) as z, zipfile.ZipFile(bad, "w") as out:
        for k in z.files:
            if k == key:
                shape = (10**9, 28, 28, 3) if k.endswith("images") else (10**9, 1)
                out.writestr(f"{k}.npy", _member(shape, str(z[k].dtype), z[k].tobytes()[:4096]))
            else:
                out.writestr(f"{k}.npy", _npy(z[k]))
    shutil.copy(src.with_suffix(".json"), bad.with_suffix(".json"))
    rc, out, err = run_cli([*command, str(bad)])
    if command[1] == "info":  # info reports each split's error instead of failing
        assert "Traceback" not in err and "MemoryError" not in out + err
        assert f"its header declares shape (1000000000," in out + err and "the archive holds" in out + err
        return
    assert_clean_cli_error(rc, err, rf"bomb\.npz \[{key}\]: its header declares shape \(1000000000, .*the "
                                    r"archive holds [\d,]+ bytes")


def _class_folders(tmp: Path, sample: Path) -> Path:
    root = tmp / "classes"
    shutil.copytree(sample / "folder", root, ignore=shutil.ignore_patterns("*.csv"))
    return root


def test_a_class_folder_that_is_a_link_counts_like_a_real_folder(sample_dir: Path, tmp_path: Path) -> None:
    real = _class_folders(tmp_path / "a", sample_dir)
    linked = _class_folders(tmp_path / "b", sample_dir)
    cls = sorted(p for p in linked.iterdir() if p.is_dir())[0]
    elsewhere = tmp_path / "elsewhere" / cls.name
    elsewhere.parent.mkdir()
    shutil.move(str(cls), str(elsewhere))
    cls.symlink_to(elsewhere, target_is_directory=True)
    # and a nested folder that is a link, plus a link back up the tree (no loop)
    (elsewhere / "more").symlink_to(real / cls.name, target_is_directory=True)
    (elsewhere / "up").symlink_to(elsewhere, target_is_directory=True)
    n_real = len(list(real.rglob("*.png")))
    n_cls = len(list((real / cls.name).glob("*.png")))
    rc, out_real, err = run_cli(["data", "stats", str(real), "--max-images", "0"])
    assert rc == 0, err
    rc, out_linked, err = run_cli(["data", "stats", str(linked), "--max-images", "0"])
    assert rc == 0, err
    assert f"of {n_real} of {n_real} images" in out_real
    assert f"of {n_real + n_cls} of {n_real + n_cls} images" in out_linked  # the nested link's images too


def _csv(tmp: Path, sample: Path, labels: list) -> Path:
    pngs = sorted((sample / "folder").rglob("*.png"))[: len(labels)]
    root = tmp / "csvdata"
    root.mkdir()
    lines = ["path,label"] + [f"{p.resolve()},{lab}" for p, lab in zip(pngs, labels)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def test_integer_labels_that_leave_classes_empty_warn_and_can_be_remapped(sample_dir: Path, tmp_path: Path) -> None:
    csv = _csv(tmp_path, sample_dir, [0, 7] * 6)
    spec = {"name": "folder", "csv": str(csv), "allow_outside_root": True}
    rc, out, err = run_cli(["data", "info", str(write_yaml(tmp_path / "d.yaml", {"data": spec})), "--json"])
    assert rc == 0, err
    warning = [ln for ln in err.splitlines() if ln.startswith("medssl: warning:")]
    assert len(warning) == 1 and "class(es) 1, 2, 3, 4, 5, 6 have no image" in warning[0], err
    assert "remap_labels: true" in warning[0]
    from medssl.data.open import open_dataset

    ds = open_dataset({**spec, "remap_labels": True})
    assert ds.class_names == ["0", "7"] and sorted(set(ds.labels().tolist())) == [0, 1]


@pytest.mark.parametrize("labels", [[0.0, 0.6] * 4, ["1.5", "2"] * 4, [0.25, 1] * 4])
def test_non_integer_csv_labels_are_refused_with_the_file(sample_dir: Path, tmp_path: Path, labels: list) -> None:
    csv = _csv(tmp_path, sample_dir, labels)
    rc, _, err = run_cli(["data", "stats", str(write_yaml(tmp_path / "d.yaml", {"data": {
        "name": "folder", "csv": str(csv), "allow_outside_root": True}}))])
    assert_clean_cli_error(rc, err, r"labels\.csv line \d+: label '[\d.]+' is a non-integer number")


def test_non_integer_npz_labels_are_refused_with_the_file_and_dtype(sample_dir: Path, tmp_path: Path) -> None:
    src = sample_dir / "medmnist" / "ihcstain.npz"
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["train_labels"] = np.where(arrays["train_labels"] > 0, 0.6, 0.0)
    np.savez(tmp_path / "f.npz", **arrays)
    shutil.copy(src.with_suffix(".json"), tmp_path / "f.json")
    rc, _, err = run_cli(["data", "stats", str(tmp_path / "f.npz")])
    assert_clean_cli_error(rc, err, r"f\.npz \[train_labels\]: labels must be integer class indices, found the "
                                    r"non-integer value 0\.6 \(dtype float64\)")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    net = build_backbone("test_resnet", in_chans=3, image_size=28, small_input_stem="auto")
    out = tmp_path_factory.mktemp("encoder") / "encoder.safetensors"
    return export_encoder(net, out, backbone="test_resnet", in_chans=3, image_size=28, small_input_stem="auto",
                          mean=[0.5] * 3, std=[0.25] * 3)


def _transfer(encoder: Path, data: str, out: Path, *extra: str) -> tuple:
    return run_cli(["transfer", "--encoder", str(encoder), "--data", data, "--protocol", "knn", "--seeds", "1",
                    "--no-plots", "--out", str(out), *extra])


def test_the_same_split_for_train_and_test_is_refused_unless_allowed(sample_dir: Path, tmp_path: Path,
                                                                     encoder: Path) -> None:
    data = str(sample_dir / "medmnist" / "ihcstain.npz")
    rc, _, err = _transfer(encoder, data, tmp_path / "o", "--split-train", "test", "--split-test", "test")
    assert_clean_cli_error(rc, err, r"train and test overlap: the train and the test set are the same split "
                                    r"\('test'.*--allow-overlap")
    assert not (tmp_path / "o").exists()
    rc, _, err = _transfer(encoder, data, tmp_path / "o", "--split-train", "test", "--split-test", "test",
                           "--allow-overlap")
    assert rc == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert any(w.startswith("train and test overlap") for w in report["warnings"])
    assert "train and test overlap" in (tmp_path / "o" / "report.md").read_text()


def test_the_same_data_under_another_path_spelling_is_still_the_same_split(sample_dir: Path, tmp_path: Path,
                                                                           encoder: Path) -> None:
    (tmp_path / "link").symlink_to(sample_dir / "medmnist", target_is_directory=True)
    rc, _, err = run_cli(["transfer", "--encoder", str(encoder), "--data", str(sample_dir / "medmnist" / "ihcstain.npz"),
                          "--test-data", str(tmp_path / "link" / "ihcstain.npz"), "--split-test", "train",
                          "--protocol", "knn", "--seeds", "1", "--no-plots", "--out", str(tmp_path / "o")])
    assert_clean_cli_error(rc, err, r"train and test overlap: the train and the test set are the same split")


def test_csv_sets_sharing_image_files_are_refused(sample_dir: Path, tmp_path: Path, encoder: Path) -> None:
    pngs = sorted((sample_dir / "folder").rglob("*.png"))
    rows = [f"{p.resolve()},{i % 2},{'train' if i < 30 else 'test'}" for i, p in enumerate(pngs[:40])]
    rows += [f"{pngs[3].resolve()},1,test"]  # one training image also scored
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    spec = write_yaml(tmp_path / "d.yaml", {"data": {"name": "folder", "csv": str(csv), "allow_outside_root": True}})
    rc, _, err = _transfer(encoder, str(spec), tmp_path / "o")
    assert_clean_cli_error(rc, err, r"train and test overlap: 1 image file\(s\) .*are in both the train \(30 files\)")


def test_slides_and_patients_in_both_sets_are_an_overlap() -> None:
    from medssl.eval.overlap import overlap

    class Tiles:
        def __init__(self, slides: list, patients: list, split: str) -> None:
            self.slide_names, self.patient_ids, self.split, self.root = slides, patients, split, "/data"

        def source_files(self) -> list:
            return [f"/data/{self.split}.h5"]

    assert overlap(Tiles(["s1", "s2"], ["p1"], "train"), Tiles(["s3"], ["p2"], "test")) is None
    assert "1 slide(s) (s2)" in str(overlap(Tiles(["s1", "s2"], ["p1"], "train"), Tiles(["s2"], ["p2"], "test")))
    assert "1 patient(s) (p1)" in str(overlap(Tiles(["s1"], ["p1"], "train"), Tiles(["s3"], ["p1"], "test")))


@pytest.mark.parametrize("which", ["x", "y"])
@pytest.mark.parametrize("layout", ["chunked", "contiguous"])
def test_an_hdf5_dataset_declaring_more_than_it_stores_is_refused(sample_dir: Path, tmp_path: Path, which: str,
                                                                  layout: str) -> None:
    """A few KB PCAM file declaring 10^6 tiles (or labels) of which a handful were written:
    HDF5 reads the rest as fill values, so it used to train on blank tiles (or allocate the
    labels); refused naming the file, the dataset and how much is stored."""
    import h5py

    root = tmp_path / "pcam"
    shutil.copytree(sample_dir / "pcam", root)
    path = next(root.glob(f"*_train_{which}.h5"))
    with h5py.File(path, "r") as f:
        first = f[which][:4]
    path.unlink()
    with h5py.File(path, "w") as f:
        shape = (10**6, *first.shape[1:])
        chunks = (1, *first.shape[1:]) if layout == "chunked" else None
        ds = f.create_dataset(which, shape=shape, dtype=first.dtype, chunks=chunks)
        if layout == "chunked":
            ds[:4] = first
    assert path.stat().st_size < 1_000_000
    rc, _, err = run_cli(["data", "stats", str(root), "--split", "train", "--max-images", "8"])
    assert_clean_cli_error(rc, err, rf"_train_{which}\.h5: dataset '{which}' declares shape \(1000000, .*but only "
                                    r"[\d,]+ of its [\d,]+ (chunks were ever written|bytes are stored)")


def test_a_byte_identical_copy_of_the_train_file_as_test_data_is_the_same_split(sample_dir: Path, tmp_path: Path,
                                                                                encoder: Path) -> None:
    src = sample_dir / "medmnist" / "ihcstain.npz"
    copy = tmp_path / "copy" / "ihcstain.npz"
    copy.parent.mkdir()
    shutil.copy(src, copy)
    shutil.copy(src.with_suffix(".json"), copy.with_suffix(".json"))
    rc, _, err = run_cli(["transfer", "--encoder", str(encoder), "--data", str(src), "--test-data", str(copy),
                          "--split-test", "train", "--protocol", "knn", "--seeds", "1", "--no-plots",
                          "--out", str(tmp_path / "o")])
    assert_clean_cli_error(rc, err, r"the same split \('train' of the same files or copies of them\)")


def test_names_from_two_collections_are_not_compared() -> None:
    """Slide 'S1' of one tile folder and 'S1' of another are different slides: no overlap."""
    from medssl.eval.overlap import overlap

    class Tiles:
        def __init__(self, root: str, split: str) -> None:
            self.slide_names, self.root, self.split = ["S1"], root, split

        def source_files(self) -> list:
            return [f"{self.root}/{self.split}.h5"]

    assert overlap(Tiles("/data/a", "train"), Tiles("/data/b", "test")) is None
    assert overlap(Tiles("/data/a", "train"), Tiles("/data/a", "test")) is not None
