"""A corpus of broken inputs driven through the user-facing path, the ``medssl`` CLI.

Each case builds one broken input in a temporary directory and runs a command on it; the
command must exit with status 2 and one ``medssl: error:`` line naming the cause (a regex),
with no traceback from inside a dependency and never a silently wrong result. Data files
go through ``medssl data stats`` (opens the dataset and reads images), configs through
``medssl pretrain`` and encoders / label fractions through ``medssl transfer``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import h5py
import numpy as np
import pytest
import torch

from tests.reliability.harness import assert_clean_cli_error, run_cli, tiny_cfg, write_yaml

Builder = Callable[[Path, Path], List[str]]
CASES: Dict[str, Tuple[Builder, str]] = {}


def case(pattern: str) -> Callable[[Builder], Builder]:
    """Register ``builder(tmp, sample) -> argv`` whose error line must match ``pattern``."""

    def register(fn: Builder) -> Builder:
        CASES[fn.__name__] = (fn, pattern)
        return fn

    return register


def stats(path: Path, *extra: str) -> List[str]:
    return ["data", "stats", str(path), "--max-images", "8", *extra]


# ------------------------------------------------------------------ MedMNIST-layout npz
def _npz(tmp: Path, sample: Path, **changes: np.ndarray) -> Path:
    """A copy of the sample's ihcstain.npz (and its sidecar JSON) with keys replaced
    (a value of None drops the key)."""
    src = sample / "medmnist" / "ihcstain.npz"
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    out = tmp / "bad.npz"
    np.savez(out, **arrays)
    shutil.copy(src.with_suffix(".json"), out.with_suffix(".json"))
    return out


def _sample_train(sample: Path) -> Tuple[np.ndarray, np.ndarray]:
    with np.load(sample / "medmnist" / "ihcstain.npz") as z:
        return z["train_images"], z["train_labels"]


@case(r"bad\.npz.*(damaged|corrupt|truncated|not a valid|cannot read)")
def npz_truncated(tmp: Path, sample: Path) -> List[str]:
    p = _npz(tmp, sample)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return stats(p)


@case(r"bad\.npz.*(not a|corrupt|cannot read|damaged)")
def npz_not_a_zip(tmp: Path, sample: Path) -> List[str]:
    p = _npz(tmp, sample)
    p.write_bytes(b"this is not an npz archive" * 10)
    return stats(p)


@case(r"no key 'train_labels' for split 'train'")
def npz_missing_labels_key(tmp: Path, sample: Path) -> List[str]:
    return stats(_npz(tmp, sample, train_labels=None))


@case(r"train_images.*(uint8|dtype).*float")
def npz_float_images(tmp: Path, sample: Path) -> List[str]:
    images, _ = _sample_train(sample)
    return stats(_npz(tmp, sample, train_images=images.astype(np.float32) / 255))


@case(r"train_images.*(shape|dimension|ndim)")
def npz_images_one_dimensional(tmp: Path, sample: Path) -> List[str]:
    images, _ = _sample_train(sample)
    return stats(_npz(tmp, sample, train_images=images.reshape(-1)))


@case(r"(540|train_images).*(541|train_labels)|labels.*(541|540)")
def npz_label_count_mismatch(tmp: Path, sample: Path) -> List[str]:
    _, labels = _sample_train(sample)
    return stats(_npz(tmp, sample, train_labels=np.concatenate([labels, labels[:1]])))


@case(r"label.*(range|out of|3 classes|\b7\b)")
def npz_label_out_of_range(tmp: Path, sample: Path) -> List[str]:
    _, labels = _sample_train(sample)
    bad = labels.copy()
    bad[5] = 7  # three classes: 0..2
    return stats(_npz(tmp, sample, train_labels=bad))


@case(r"train_labels.*(shape|column|\(540, 2\))")
def npz_labels_wrong_shape(tmp: Path, sample: Path) -> List[str]:
    _, labels = _sample_train(sample)
    return stats(_npz(tmp, sample, train_labels=np.concatenate([labels, labels], axis=1)))


@case(r"bad\.npz.*(pickle|object)")
def npz_object_array(tmp: Path, sample: Path) -> List[str]:
    _, labels = _sample_train(sample)
    return stats(_npz(tmp, sample, train_labels=np.array([{"a": 1}] * len(labels), dtype=object)))


@case(r"(no images|empty|0 images|holds no)")
def npz_empty_split(tmp: Path, sample: Path) -> List[str]:
    images, labels = _sample_train(sample)
    p = _npz(tmp, sample, train_images=images[:0], train_labels=labels[:0])
    return ["pretrain", str(write_yaml(tmp / "c.yaml", tiny_cfg(sample, tmp / "run", "simclr")))] + [
        f"data.path={p}"]


# ------------------------------------------------------------------ PCAM HDF5
def _pcam(tmp: Path, sample: Path) -> Path:
    root = tmp / "pcam"
    shutil.copytree(sample / "pcam", root)
    return root


def _pcam_file(root: Path, which: str, split: str = "train") -> Path:
    return root / f"camelyonpatch_level_2_split_{split}_{which}.h5"


def _rewrite_h5(path: Path, key: str, data: np.ndarray) -> None:
    path.unlink()
    with h5py.File(path, "w") as fh:
        fh.create_dataset(key, data=data)


@case(r"camelyonpatch_level_2_split_train_x\.h5.*(damaged|corrupt|truncated|not .*HDF5|cannot (open|read))")
def pcam_truncated(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    x = _pcam_file(root, "x")
    x.write_bytes(x.read_bytes()[: x.stat().st_size // 3])
    return stats(root, "--split", "train")


@case(r"camelyonpatch_level_2_split_train_x\.h5.*(not .*HDF5|corrupt|cannot (open|read))")
def pcam_not_hdf5(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    _pcam_file(root, "x").write_text("not an HDF5 file\n")
    return stats(root, "--split", "train")


@case(r"camelyonpatch_level_2_split_train_x\.h5.*(key|dataset) 'x'")
def pcam_wrong_key(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    x = _pcam_file(root, "x")
    with h5py.File(x, "r") as fh:
        data = fh["x"][:]
    _rewrite_h5(x, "images", data)
    return stats(root, "--split", "train")


@case(r"camelyonpatch_level_2_split_train_x\.h5.*shape")
def pcam_images_without_channels(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    x = _pcam_file(root, "x")
    with h5py.File(x, "r") as fh:
        data = fh["x"][:, :, :, 0]
    _rewrite_h5(x, "x", data)
    return stats(root, "--split", "train")


@case(r"camelyonpatch_level_2_split_train_x\.h5.*(uint8|dtype).*float")
def pcam_float_images(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    x = _pcam_file(root, "x")
    with h5py.File(x, "r") as fh:
        data = fh["x"][:].astype(np.float32)
    _rewrite_h5(x, "x", data)
    return stats(root, "--split", "train")


def _pcam_x_elsewhere(tmp: Path, sample: Path, form: str) -> List[str]:
    """The train x.h5 replaced by one whose 'x' lives in another file, then that file deleted
    (a copy made without its sources): h5py would read a virtual dataset as zeros."""
    root = _pcam(tmp, sample)
    x = _pcam_file(root, "x")
    with h5py.File(x, "r") as fh:
        data = fh["x"][:]
    x.unlink()
    src = tmp / "elsewhere.h5"
    if form == "external storage":
        src = tmp / "elsewhere.bin"
        data.tofile(src)
        with h5py.File(x, "w") as fh:
            fh.create_dataset("x", shape=data.shape, dtype=np.uint8, external=[(str(src), 0, data.nbytes)])
    else:
        with h5py.File(src, "w") as fh:
            fh["x"] = data
        with h5py.File(x, "w") as fh:
            if form == "external link":
                fh["x"] = h5py.ExternalLink(str(src), "/x")
            else:
                layout = h5py.VirtualLayout(shape=data.shape, dtype=np.uint8)
                layout[:] = h5py.VirtualSource(str(src), "x", shape=data.shape)
                fh.create_virtual_dataset("x", layout, fillvalue=0)
    src.unlink()
    return stats(root, "--split", "train")


@case(r"split_train_x\.h5: dataset 'x' is an HDF5 external link to .*elsewhere\.h5.*only data stored in the file")
def pcam_x_external_link_source_gone(tmp: Path, sample: Path) -> List[str]:
    return _pcam_x_elsewhere(tmp, sample, "external link")


@case(r"split_train_x\.h5: dataset 'x' is an HDF5 virtual dataset mapped from .*elsewhere\.h5")
def pcam_x_virtual_dataset_source_gone(tmp: Path, sample: Path) -> List[str]:
    return _pcam_x_elsewhere(tmp, sample, "virtual dataset")


@case(r"split_train_x\.h5: dataset 'x' keeps its bytes in external file\(s\) .*elsewhere\.bin")
def pcam_x_external_storage_source_gone(tmp: Path, sample: Path) -> List[str]:
    return _pcam_x_elsewhere(tmp, sample, "external storage")


@case(r"split_train_x\.h5 holds 2 x 2 px tiles; PCAM-layout tiles must be at least 32 x 32 px, because the "
      r"label describes the centre")
def pcam_tiles_of_two_pixels(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    x = _pcam_file(root, "x")
    with h5py.File(x, "r") as fh:
        data = np.ascontiguousarray(fh["x"][:, 47:49, 47:49])
    _rewrite_h5(x, "x", data)
    return stats(root, "--split", "train")


@case(r"holds \d+ images but .*_y\.h5 holds \d+ labels")
def pcam_label_count_mismatch(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    y = _pcam_file(root, "y")
    with h5py.File(y, "r") as fh:
        data = fh["y"][:-3]
    _rewrite_h5(y, "y", data)
    return stats(root, "--split", "train")


@case(r"camelyonpatch_level_2_split_train_y\.h5.*(0 or 1|0/1|binary|range|\b2\b)")
def pcam_label_out_of_range(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    y = _pcam_file(root, "y")
    with h5py.File(y, "r") as fh:
        data = fh["y"][:]
    data[0] = 2
    _rewrite_h5(y, "y", data)
    return stats(root, "--split", "train")


@case(r"expected file camelyonpatch_level_2_split_train_y\.h5 \(not in .*pcam\)")
def pcam_missing_label_file(tmp: Path, sample: Path) -> List[str]:
    root = _pcam(tmp, sample)
    _pcam_file(root, "y").unlink()
    return stats(root, "--split", "train")


# ------------------------------------------------------------------ STL-10 binary
def _stl(tmp: Path, sample: Path) -> Path:
    root = tmp / "stl10"
    shutil.copytree(sample / "stl10", root)
    return root


@case(r"train_X\.bin.*(size|truncated|multiple|27648)")
def stl10_truncated_images(tmp: Path, sample: Path) -> List[str]:
    root = _stl(tmp, sample)
    x = root / "stl10_binary" / "train_X.bin"
    x.write_bytes(x.read_bytes()[:-100])
    return stats(root, "--split", "train")


@case(r"train_y\.bin.*(1\.\.10|1 to 10|range|\b0\b)")
def stl10_label_out_of_range(tmp: Path, sample: Path) -> List[str]:
    root = _stl(tmp, sample)
    y = root / "stl10_binary" / "train_y.bin"
    data = bytearray(y.read_bytes())
    data[0] = 0  # STL-10 labels are 1..10
    y.write_bytes(bytes(data))
    return stats(root, "--split", "train")


@case(r"train_X\.bin.*\d+ images.*train_y\.bin.*\d+ labels|train_y\.bin.*\d+ labels.*\d+ images")
def stl10_label_count_mismatch(tmp: Path, sample: Path) -> List[str]:
    root = _stl(tmp, sample)
    y = root / "stl10_binary" / "train_y.bin"
    y.write_bytes(y.read_bytes()[:-2])
    return stats(root, "--split", "train")


# ------------------------------------------------------------------ own images (folder / CSV)
def _csv(tmp: Path, sample: Path, text: str) -> Path:
    root = tmp / "folder"
    shutil.copytree(sample / "folder", root)
    (root / "labels.csv").write_text(text)
    return root / "labels.csv"


def _first_png(sample: Path) -> str:
    return sorted(p.relative_to(sample / "folder").as_posix() for p in (sample / "folder").rglob("*.png"))[0]


@case(r"labels\.csv: needs a 'path' column")
def csv_without_path_column(tmp: Path, sample: Path) -> List[str]:
    return stats(_csv(tmp, sample, f"file,label\n{_first_png(sample)},background\n"))


@case(r"cannot read image .*broken\.png \(corrupt, truncated or not an image\)")
def csv_corrupt_image(tmp: Path, sample: Path) -> List[str]:
    csv = _csv(tmp, sample, "path,label\nbroken.png,a\nbroken.png,b\n")
    (csv.parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return stats(csv)


@case(r"labels\.csv line 2: label 'unknown_class' is not one of the class names")
def csv_label_not_in_class_names(tmp: Path, sample: Path) -> List[str]:
    csv = _csv(tmp, sample, f"path,label\n{_first_png(sample)},unknown_class\n")
    cfg = {"name": "folder", "csv": str(csv), "class_names": ["background", "dab_positive"]}
    return stats(write_yaml(tmp / "data.yaml", {"data": cfg}))


@case(r"labels\.csv: integer labels must be >= 0")
def csv_negative_integer_label(tmp: Path, sample: Path) -> List[str]:
    png = _first_png(sample)
    return stats(_csv(tmp, sample, f"path,label\n{png},0\n{png},-1\n"))


@case(r"no rows with split 'val'; splits present")
def csv_empty_split(tmp: Path, sample: Path) -> List[str]:
    png = _first_png(sample)
    return stats(_csv(tmp, sample, f"path,label,split\n{png},a,train\n{png},b,train\n"), "--split", "val")


@case(r"class folder .*empty/class_a has no images")
def folder_without_images(tmp: Path, sample: Path) -> List[str]:
    (tmp / "empty" / "class_a").mkdir(parents=True)
    (tmp / "empty" / "notes.txt").write_text("no images here")
    return stats(write_yaml(tmp / "data.yaml", {"data": {"name": "folder", "root": str(tmp / "empty")}}))


@case(r"image .*zz_bomb\.png is 10000 x 10000 = 100,000,000 pixels, more than max_pixels=89,478,485; "
      r"refused before decoding")
def folder_image_over_the_pixel_limit(tmp: Path, sample: Path) -> List[str]:
    from tests.data.test_folder import png_header_only

    root = tmp / "tiles"
    shutil.copytree(sample / "folder" / sorted(p.name for p in (sample / "folder").iterdir() if p.is_dir())[0], root)
    png_header_only(root / "zz_bomb.png", 10000, 10000)  # 120 bytes declaring 300 MB of pixels
    return ["data", "stats", str(root), "--max-images", "0"]


@case(r"max_images \(--max-images\) must be a whole number >= 0, got -5; 0 uses every image")
def stats_negative_max_images(tmp: Path, sample: Path) -> List[str]:
    return ["data", "stats", str(sample / "medmnist" / "ihcstain.npz"), "--max-images", "-5"]


@case(r"(does not exist|not found).*nowhere|nowhere.*(does not exist|not found)")
def dataset_path_missing(tmp: Path, sample: Path) -> List[str]:
    return stats(tmp / "nowhere" / "data.npz")


@case(r"cannot tell the dataset format of file .*notes\.txt")
def dataset_of_unknown_format(tmp: Path, sample: Path) -> List[str]:
    (tmp / "notes.txt").write_text("hello")
    return stats(tmp / "notes.txt")


# ------------------------------------------------------------------ pretraining configs
def pretrain(tmp: Path, sample: Path, *overrides: str, objective: str = "simclr") -> List[str]:
    cfg = write_yaml(tmp / "cfg.yaml", tiny_cfg(sample, tmp / "run", objective, max_steps=1))
    return ["pretrain", str(cfg), "--no-progress", *overrides]


@case(r"unknown key 'train\.epocs'.*cfg\.yaml.*Did you mean 'epochs'")
def config_typo(tmp: Path, sample: Path) -> List[str]:
    cfg = tiny_cfg(sample, tmp / "run", "simclr")
    cfg["train"]["epocs"] = 3
    return ["pretrain", str(write_yaml(tmp / "cfg.yaml", cfg))]


@case(r"train\.batch_size.*(int|integer).*'eight'|'eight'.*train\.batch_size")
def config_wrong_type(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "train.batch_size=eight")


@case(r"train\.batch_size must be >= 2, got 1")
def config_out_of_range(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "train.batch_size=1")


@case(r"cfg\.yaml.*(YAML|yaml|parse|line)")
def config_yaml_syntax_error(tmp: Path, sample: Path) -> List[str]:
    p = tmp / "cfg.yaml"
    p.write_text("train: {max_steps: 2\nmodel: [unclosed\n")
    return ["pretrain", str(p)]


@case(r"objective\.name.*'nnclrr'.*(Did you mean|nnclr)")
def config_unknown_objective(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "objective.name=nnclrr")


@case(r"(backbone|model).*'resnet_does_not_exist'")
def config_unknown_backbone(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "model.backbone=resnet_does_not_exist")


@case(r"backbone weights file .*missing\.pth.* does not exist")
def config_weights_file_missing(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, f"model.weights={tmp / 'missing.pth'}")


@case(r"(cannot read backbone weights file|no state dict).*garbage\.pth")
def config_weights_file_garbage(tmp: Path, sample: Path) -> List[str]:
    (tmp / "garbage.pth").write_bytes(b"\x00\x01 definitely not a state dict" * 20)
    return pretrain(tmp, sample, f"model.weights={tmp / 'garbage.pth'}")


@case(r"fewer than one batch of train\.batch_size=4096")
def dataset_smaller_than_one_batch(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "train.batch_size=4096")


@case(r"objective\.k=1000 is larger than the support set, which holds at most 64 rows")
def snclr_k_larger_than_support_set(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "objective.k=1000", objective="snclr")


@case(r"cannot write the run directory .*file\.txt/run \(out_dir\): Not a directory")
def out_dir_under_a_regular_file(tmp: Path, sample: Path) -> List[str]:
    (tmp / "file.txt").write_text("a regular file, not a folder")
    return pretrain(tmp, sample, f"out_dir={tmp / 'file.txt' / 'run'}")


@case(r"already holds checkpoints of another run.*--resume")
def two_runs_in_one_out_dir(tmp: Path, sample: Path) -> List[str]:
    ckpts = tmp / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    torch.save({"format": "medssl-pretrain-v1", "step": 1}, ckpts / "step_00000001.pt")
    return pretrain(tmp, sample)


@case(r"val_data must be a labelled dataset")
def knn_monitor_on_unlabelled_val_data(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "train.knn_every=1",
                    f"val_data={{name: stl10, root: {sample / 'stl10'}, split: unlabeled}}")


# ------------------------------------------------------------------ hostile config files and values
def _cfg_text(tmp: Path, sample: Path) -> str:
    import yaml

    return yaml.safe_dump(tiny_cfg(sample, tmp / "run", "simclr", max_steps=1), sort_keys=False)


@case(r"optim\.lr.*must be a finite number, got nan")
def config_nan_learning_rate(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "optim.lr=.nan")  # exited 0 and exported NaN weights


@case(r"objective\.tau.*must be a finite number, got inf")
def config_infinite_objective_parameter(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "objective.tau=.inf")


@case(r"train\.collapse_std.*must be a finite number, got nan")
def config_nan_collapse_threshold(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "train.collapse_std=.nan")  # silently disabled the collapse check


@case(r"augment\.params\.hue.*must be a finite number, got nan")
def config_nan_augmentation_parameter(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "augment.params.hue=.nan")


@case(r"optim\.betas\[0\] must be in \[0\.0, 1\.0\), got 2")
def config_adam_beta_out_of_range(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "optim.name=adam", "optim.betas=[2, 0.999]")


@case(r"optim\.momentum must be in \[0\.0, 1\.0\), got -1")
def config_negative_momentum(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "optim.momentum=-1")


@case(r"cfg\.yaml: duplicate key 'optim' at lines \d+ and \d+")
def config_duplicate_key(tmp: Path, sample: Path) -> List[str]:
    p = tmp / "cfg.yaml"
    p.write_text(_cfg_text(tmp, sample) + "optim:\n  name: sgd\n  lr: 100\n")  # silently won
    return ["pretrain", str(p)]


@case(r"cfg\.yaml: YAML aliases are not allowed")
def config_alias_bomb(tmp: Path, sample: Path) -> List[str]:
    lines = [_cfg_text(tmp, sample).rstrip(), "x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)]
    p = tmp / "cfg.yaml"
    p.write_text("\n".join(lines) + "\n")  # wrote a 19.7 MB config.yaml
    return ["pretrain", str(p)]


@case(r"cfg\.yaml is 5\.\d MB; medssl reads YAML files of at most 1 MiB")
def config_five_megabytes(tmp: Path, sample: Path) -> List[str]:
    p = tmp / "cfg.yaml"
    p.write_text(_cfg_text(tmp, sample) + "notes:\n" + "- 0123456789abcdef\n" * 290_000)  # took 13.7 s
    return ["pretrain", str(p)]


def _latin1(path: Path, text: str) -> Path:
    path.write_bytes((text + "# r\u00e9glages\n").encode("latin-1"))
    return path


@case(r"cfg\.yaml is not UTF-8 text \(byte 0xe9 at line \d+\)")
def config_not_utf8(tmp: Path, sample: Path) -> List[str]:
    return ["pretrain", str(_latin1(tmp / "cfg.yaml", _cfg_text(tmp, sample)))]


@case(r"data\.yaml is not UTF-8 text \(byte 0xe9 at line 2\)")
def data_yaml_not_utf8(tmp: Path, sample: Path) -> List[str]:
    path = _latin1(tmp / "data.yaml", f"data: {{name: medmnist, path: {sample / 'medmnist' / 'ihcstain.npz'}}}\n")
    return ["data", "info", str(path), "--no-checksum"]


@case(r"transfer\.yaml is not UTF-8 text")
def transfer_config_not_utf8(tmp: Path, sample: Path) -> List[str]:
    return ["transfer", str(_latin1(tmp / "transfer.yaml", "encoder: runs/x\n"))]


@case(r"backbone 'test_vit' cannot take 28 px images .*patch size.*it does work at 16, 32, 48 px")
def backbone_patch_larger_than_image(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "model.backbone=test_vit")


@case(r"backbone 'inception_v3' cannot take 28 px images .*Kernel size.*it does work at 96(, \d+)* px")
def backbone_that_downsamples_28px_to_nothing(tmp: Path, sample: Path) -> List[str]:
    return pretrain(tmp, sample, "model.backbone=inception_v3")


# ------------------------------------------------------------------ transfer
@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported (untrained) 3-channel 28 px test_resnet encoder."""
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    torch.manual_seed(0)
    net = build_backbone("test_resnet", in_chans=3, image_size=28, small_input_stem="auto")
    out = tmp_path_factory.mktemp("encoder") / "encoder.safetensors"
    return export_encoder(net, out, backbone="test_resnet", in_chans=3, image_size=28, small_input_stem="auto",
                          mean=[0.5] * 3, std=[0.25] * 3)


TRANSFER_CASES: Dict[str, Tuple[Callable[[Path, Path, Path], List[str]], str]] = {
    "encoder_missing": (lambda tmp, sample, enc: ["--encoder", str(tmp / "none")], r"encoder file .*none.* not found"),
    "encoder_corrupt": (lambda tmp, sample, enc: ["--encoder", str(_corrupt_encoder(tmp, enc))],
                        r"cannot read backbone weights file .*broken\.safetensors"),
    "encoder_json_invalid": (lambda tmp, sample, enc: ["--encoder", str(_encoder_with_json(tmp, enc, b'{"backbone": '))],
                             r"encoder\.json: not valid JSON \(line 1, column 14"),
    "encoder_json_a_list": (lambda tmp, sample, enc: ["--encoder", str(_encoder_with_json(tmp, enc, b"[1, 2]"))],
                            r"encoder\.json: expected a JSON object .* got a JSON list"),
    "encoder_json_without_backbone": (lambda tmp, sample, enc: ["--encoder", str(_encoder_with_json(
                                          tmp, enc, lambda m: {k: v for k, v in m.items() if k != "backbone"}))],
                                      r"encoder\.json: missing key\(s\) 'backbone'"),
    "encoder_json_not_utf8": (lambda tmp, sample, enc: ["--encoder", str(_encoder_with_json(
                                  tmp, enc, '{"backbone": "test_resnet", "note": "\u00e9"}'.encode("latin-1")))],
                              r"encoder\.json: not UTF-8 text \(byte \d+\)"),
    "encoder_json_edited_stem": (lambda tmp, sample, enc: ["--encoder", str(_encoder_with_json(
                                     tmp, enc, lambda m: {**m, "small_input_stem": not m["small_input_stem"]}))],
                                 r"encoder\.json disagrees with the metadata stored inside .*encoder\.safetensors "
                                 r"\(small_input_stem: (False|True) in encoder\.json vs (True|False) in"),
    "encoder_json_edited_size": (lambda tmp, sample, enc: ["--encoder", str(_encoder_with_json(
                                     tmp, enc, lambda m: {**m, "image_size": 64, "mean": [0.4] * 3}))],
                                 r"image_size: 64 in encoder\.json vs 28 in encoder\.safetensors; mean: "),
    "label_fraction_zero": (lambda tmp, sample, enc: ["--encoder", str(enc), "--label-fraction", "0"],
                            r"label_fraction.*\(0, 1\]|label_fraction.*> 0"),
    "class_names_disagree": (lambda tmp, sample, enc: ["--encoder", str(enc), "--data", str(_breast_like(tmp, sample)),
                                                       "--test-data", str(sample / "pcam")],
                             r"classes differently \(0: 'malignant' vs 'normal', 1: 'normal, benign' vs "
                             r"'tumor'.*--allow-class-name-mismatch"),
    "label_fraction_nan": (lambda tmp, sample, enc: ["--encoder", str(enc), "--label-fraction", "nan"],
                           r"label_fraction.*must be a finite number, got nan"),
    "unlabelled_data": (lambda tmp, sample, enc: ["--encoder", str(enc), "--data",
                                                  str(write_yaml(tmp / "d.yaml", {"data": {
                                                      "name": "stl10", "root": str(sample / "stl10")}})),
                                                  "--split-train", "unlabeled"],
                        r"(unlabelled|no labels|labelled)"),
}


def _encoder_with_json(tmp: Path, enc: Path, change: Any) -> Path:
    """A copy of the encoder whose encoder.json holds ``change`` (bytes) or
    ``change(original record)`` (a function): as if edited by hand."""
    import json

    out = tmp / "enc"
    out.mkdir()
    shutil.copy(enc, out / "encoder.safetensors")
    meta = json.loads(enc.with_suffix(".json").read_text())
    raw = change if isinstance(change, bytes) else json.dumps(change(meta)).encode()
    (out / "encoder.json").write_bytes(raw)
    return out


def _a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("a regular file, not a folder")
    return tmp / "notes.txt"


# --out that cannot be written, for every command with an --out: (tmp, sample, encoder,
# read-only directory) -> argv. Nothing may be created and no work done before the refusal.
OUT_CASES: Dict[str, Tuple[Callable[..., List[str]], str]] = {
    "transfer_out_is_a_file": (lambda tmp, sample, enc, ro: ["transfer", "--encoder", str(enc), "--data",
                                                             str(sample / "pcam"), "--out", str(_a_file(tmp))],
                               r"notes\.txt is an existing file, not a directory"),
    "transfer_out_in_unwritable_dir": (lambda tmp, sample, enc, ro: ["transfer", "--encoder", str(enc), "--data",
                                                                     str(sample / "pcam"), "--out", str(ro / "o")],
                                       r"read_only/o.*(permission|not permitted)"),
    "embed_out_under_a_file": (lambda tmp, sample, enc, ro: ["embed", "--encoder", str(enc), "--data",
                                                             str(sample / "pcam"), "--out",
                                                             str(_a_file(tmp) / "f.npz")],
                               r"notes\.txt is a file, not a directory"),
    "embed_out_in_unwritable_dir": (lambda tmp, sample, enc, ro: ["embed", "--encoder", str(enc), "--data",
                                                                  str(sample / "pcam"), "--out", str(ro / "f.npz")],
                                    r"read_only/f\.npz.*(permission|not permitted)"),
}


def _corrupt_encoder(tmp: Path, enc: Path) -> Path:
    bad = tmp / "broken.safetensors"
    bad.write_bytes(enc.read_bytes()[:200])
    shutil.copy(enc.with_suffix(".json"), bad.with_suffix(".json"))
    return bad


def _breast_like(tmp: Path, sample: Path, names: Tuple[str, str] = ("malignant", "normal, benign")) -> Path:
    """A binary MedMNIST-layout npz (the sample's PCAM tiles, shrunk) that names its classes
    as BreastMNIST does: binary like PCAM, with the same class count, but other classes."""
    from medssl.data.medmnist import write_medmnist_npz

    splits = {}
    for split in ("train", "test"):
        with h5py.File(_pcam_file(sample / "pcam", "x", split), "r") as fx, \
                h5py.File(_pcam_file(sample / "pcam", "y", split), "r") as fy:
            splits[split] = (fx["x"][:, ::4, ::4][:, :28, :28], fy["y"][:].reshape(-1))
    return write_medmnist_npz(tmp / "breastlike.npz", splits, info={"task": "binary", "class_names": list(names)})


def _missing_class_npz(tmp: Path, sample: Path) -> Path:
    """A copy of the sample where class 2 is absent from train but present in test."""
    with np.load(sample / "medmnist" / "ihcstain.npz") as z:
        arrays = {k: z[k] for k in z.files}
    keep = arrays["train_labels"][:, 0] != 2
    arrays["train_images"], arrays["train_labels"] = arrays["train_images"][keep], arrays["train_labels"][keep]
    out = tmp / "nocls.npz"
    np.savez(out, **arrays)
    shutil.copy(sample / "medmnist" / "ihcstain.json", out.with_suffix(".json"))
    return out


# ------------------------------------------------------------------ the tests
def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) + len(TRANSFER_CASES) + len(OUT_CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_clear_error_line(name: str, sample_dir: Path, tmp_path: Path) -> None:
    build, pattern = CASES[name]
    rc, _, err = run_cli(build(tmp_path, sample_dir))
    assert_clean_cli_error(rc, err, pattern)


@pytest.mark.parametrize("name", sorted(TRANSFER_CASES))
def test_bad_transfer_input_gives_one_clear_error_line(name: str, sample_dir: Path, tmp_path: Path,
                                                      encoder: Path) -> None:
    build, pattern = TRANSFER_CASES[name]
    argv = build(tmp_path, sample_dir, encoder)
    if "--data" not in argv:
        argv += ["--data", str(sample_dir / "medmnist" / "ihcstain.npz")]
    rc, _, err = run_cli(["transfer", *argv, "--out", str(tmp_path / "out"), "--seeds", "1", "--no-plots"])
    assert_clean_cli_error(rc, err, pattern)


@pytest.mark.parametrize("name", sorted(OUT_CASES))
def test_unwritable_out_gives_one_clear_error_line(name: str, sample_dir: Path, tmp_path: Path, encoder: Path,
                                                  request: pytest.FixtureRequest) -> None:
    build, pattern = OUT_CASES[name]
    read_only = request.getfixturevalue("unwritable_dir") if "unwritable" in name else tmp_path / "unused"
    argv = build(tmp_path, sample_dir, encoder, read_only)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, _, err = run_cli(argv)
    assert_clean_cli_error(rc, err, pattern)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing created on the way out


def test_constant_images_are_valid_data(sample_dir: Path, tmp_path: Path) -> None:
    """A blank (constant) tile is a real thing in slides: it loads, and its statistics are
    reported as measured (std 0) rather than refused."""
    images, labels = _sample_train(sample_dir)
    images = np.full_like(images, 200)
    rc, out, err = run_cli(stats(_npz(tmp_path, sample_dir, train_images=images), "--json"))
    assert rc == 0, err
    import json

    got = json.loads(out)
    assert np.allclose(got["mean"], 200 / 255) and np.allclose(got["std"], 0.0)


def _transfer(enc: Path, data: Path, test: Path, out: Path, *extra: str) -> Tuple[int, str, str]:
    return run_cli(["transfer", "--encoder", str(enc), "--data", str(data), "--test-data", str(test), "--protocol",
                    "knn", "--seeds", "1", "--no-plots", "--out", str(out), *extra])


def test_other_class_names_are_accepted_only_when_asked_and_the_report_says_which(sample_dir: Path, tmp_path: Path,
                                                                                 encoder: Path) -> None:
    import json

    rc, _, err = _transfer(encoder, _breast_like(tmp_path, sample_dir), sample_dir / "pcam", tmp_path / "out",
                           "--allow-class-name-mismatch")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["class_names"] == ["malignant", "normal, benign"]
    assert report["class_names_source"] == {"from": "train", "train": ["malignant", "normal, benign"],
                                            "test": ["normal", "tumor"], "agree": False}
    assert any("class names differ" in w for w in report["warnings"]) and "class names differ" in err
    assert "the test data calls them normal, tumor" in (tmp_path / "out" / "report.md").read_text()


def test_same_class_names_in_another_case_agree_and_another_order_does_not(sample_dir: Path, tmp_path: Path,
                                                                           encoder: Path) -> None:
    import json

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rc, _, err = _transfer(encoder, _breast_like(tmp_path / "a", sample_dir, ("Normal ", "TUMOR")),
                           sample_dir / "pcam", tmp_path / "out")
    assert rc == 0, err
    source = json.loads((tmp_path / "out" / "report.json").read_text())["class_names_source"]
    assert source["agree"] is True
    rc, _, err = _transfer(encoder, _breast_like(tmp_path / "b", sample_dir, ("tumor", "normal")),
                           sample_dir / "pcam", tmp_path / "out2")
    assert_clean_cli_error(rc, err, r"the same names in another order.*0: 'tumor' vs 'normal'")


def test_broken_links_in_a_folder_are_reported_on_one_line_and_the_rest_is_read(sample_dir: Path,
                                                                              tmp_path: Path) -> None:
    root = tmp_path / "folder"
    shutil.copytree(sample_dir / "folder", root, ignore=shutil.ignore_patterns("*.csv"))  # class folders only
    n_images = len(list(root.rglob("*.png")))
    cls = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (cls / "moved_away.png").symlink_to(tmp_path / "gone.png")
    (cls / "loop.png").symlink_to("loop.png")
    rc, out, err = run_cli(["data", "stats", str(root), "--max-images", "0"])
    assert rc == 0, err
    warning = [ln for ln in err.splitlines() if ln.startswith("medssl: warning:")]
    assert len(warning) == 1 and "skipped 2 broken symbolic link(s)" in warning[0], err
    assert "loop.png" in warning[0] and "moved_away.png" in warning[0] and "Traceback" not in err
    assert f"of {n_images} of {n_images} images" in out


def test_label_fraction_on_a_split_missing_a_class_warns_and_reports_it(sample_dir: Path, tmp_path: Path,
                                                                        encoder: Path) -> None:
    """Not an error (the class is absent from the user's own split, not lost by medssl's
    sampling), but never silent: a warning on stderr and in report.json names the class."""
    import json

    data = _missing_class_npz(tmp_path, sample_dir)
    rc, _, err = run_cli(["transfer", "--encoder", str(encoder), "--data", str(data), "--label-fraction", "0.2",
                          "--seeds", "1", "--no-plots", "--out", str(tmp_path / "out")])
    assert rc == 0, err
    assert "the train split has no example of class(es) dab_positive" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("dab_positive" in w for w in report["warnings"])
