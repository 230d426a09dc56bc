"""Own image folders and CSV lists (medssl/data/folder.py), on real pixels from scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medssl.data.folder import ImageFolderDataset, decode_image
from medssl.errors import ConfigError, DataError
from medssl.registry import DATASETS


@pytest.fixture(scope="module")
def tiles() -> list[np.ndarray]:
    """Six real 40 x 48 RGB tiles: three IHC colon, three fundus (shipped with scikit-image)."""
    import skimage.data

    ihc = skimage.data.immunohistochemistry()
    retina = skimage.data.retina()
    out = [ihc[40 * i : 40 * i + 40, 100:148] for i in range(3)]
    out += [retina[600 + 40 * i : 640 + 40 * i, 600:648] for i in range(3)]
    return [np.ascontiguousarray(t) for t in out]


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture()
def class_tree(tmp_path, tiles) -> Path:
    root = tmp_path / "cls"
    _png(root / "tumour" / "t0.png", tiles[0])
    _png(root / "tumour" / "deeper" / "t1.png", tiles[1])  # class folders are searched recursively
    _png(root / "normal" / "n0.PNG", tiles[3])
    Image.fromarray(tiles[4]).save(root / "normal" / "n1.jpg", quality=95)
    _png(root / "normal" / ".ipynb_checkpoints" / "n0-checkpoint.png", tiles[5])  # hidden: skipped
    (root / "normal" / "notes.txt").write_text("not an image")
    return root


# -- layouts ------------------------------------------------------------------------------------
def test_class_folders(class_tree, tiles):
    ds = DATASETS.build({"name": "folder", "root": str(class_tree)})
    assert ds.class_names == ["normal", "tumour"] and ds.task == "binary" and ds.num_classes == 2
    assert [p.name for p in ds.files] == ["n0.PNG", "n1.jpg", "t1.png", "t0.png"]
    assert ds.labels().tolist() == [0, 0, 1, 1] and ds.in_channels == 3
    img, lab = ds[3]
    assert type(lab) is int and lab == 1
    np.testing.assert_array_equal(img, tiles[0])  # PNG is lossless
    jpg, _ = ds[1]
    assert jpg.shape == (40, 48, 3) and np.abs(jpg.astype(int) - tiles[4]).mean() < 6


def test_class_names_override_orders_classes(class_tree):
    ds = ImageFolderDataset(class_tree, class_names=["tumour", "normal", "other"])
    assert ds.labels().tolist() == [1, 1, 0, 0] and ds.task == "multiclass" and ds.num_classes == 3
    with pytest.raises(DataError, match=r"class folder .*normal is not in class_names \['tumour'\]"):
        ImageFolderDataset(class_tree, class_names=["tumour"])


def test_split_subfolders(tmp_path, tiles):
    for split, idx in (("train", (0, 3)), ("val", (1, 4)), ("test", (2, 5))):
        _png(tmp_path / split / "ihc" / f"{split}.png", tiles[idx[0]])
        _png(tmp_path / split / "retina" / f"{split}.png", tiles[idx[1]])
    ds = ImageFolderDataset(tmp_path, split="valid")
    assert ds.split == "valid" and len(ds) == 2 and ds.labels().tolist() == [0, 1]
    np.testing.assert_array_equal(ds[1][0], tiles[4])
    with pytest.raises(DataError, match=r"split 'holdout' .*subfolders: test, train, val"):
        ImageFolderDataset(tmp_path, split="holdout")


def test_flat_folder_is_unlabelled(tmp_path, tiles):
    for i in range(3):
        _png(tmp_path / f"img{i}.tif", tiles[i])
    ds = ImageFolderDataset(tmp_path)
    assert ds.task is None and ds.num_classes == 0 and not ds.is_labelled
    assert ds.labels().tolist() == [-1, -1, -1] and ds[2][1] == -1
    np.testing.assert_array_equal(ds[2][0], tiles[2])


def test_csv_with_splits_and_names(tmp_path, tiles):
    for i, t in enumerate(tiles):
        _png(tmp_path / "imgs" / f"{i}.png", t)
    rows = ["path,label,split", "imgs/0.png,ihc,train", "imgs/3.png,fundus,train",
            "imgs/1.png,ihc,val", "imgs/5.png,other,test", "imgs/4.png,fundus,test"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    test = ImageFolderDataset(csv=tmp_path / "list.csv", split="test")
    train = DATASETS.build({"name": "folder", "csv": str(tmp_path / "list.csv"), "split": "train"})
    everything = ImageFolderDataset(csv=tmp_path / "list.csv")
    # one class index across splits, even for a class seen only in the test rows
    assert test.class_names == train.class_names == ["fundus", "ihc", "other"]
    assert test.labels().tolist() == [2, 0] and train.labels().tolist() == [1, 0]
    assert len(everything) == 5 and train.task == "multiclass"
    np.testing.assert_array_equal(test[0][0], tiles[5])


def test_csv_relative_to_root_and_integer_labels(tmp_path, tiles):
    data = tmp_path / "data"
    for i in range(3):
        _png(data / f"{i}.bmp", tiles[i])
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "labels.csv").write_text("path,label\n0.bmp,2\n1.bmp,0\n2.bmp,0\n")
    ds = ImageFolderDataset(root=data, csv=meta / "labels.csv")
    assert ds.class_names == ["0", "1", "2"] and ds.labels().tolist() == [2, 0, 0]
    named = ImageFolderDataset(root=data, csv=meta / "labels.csv", class_names=["no", "mild", "severe"], task="ordinal")
    assert named.task == "ordinal" and named.labels().tolist() == [2, 0, 0]


def test_csv_multilabel(tmp_path, tiles):
    for i in range(3):
        _png(tmp_path / f"{i}.png", tiles[i])
    (tmp_path / "ml.csv").write_text("path,label\n0.png,effusion|nodule\n1.png,\n2.png,nodule; mass\n")
    ds = ImageFolderDataset(csv=tmp_path / "ml.csv")
    assert ds.task == "multilabel" and ds.class_names == ["effusion", "mass", "nodule"]
    lab = ds[0][1]
    assert lab.dtype == np.float32 and lab.tolist() == [1.0, 0.0, 1.0]
    assert ds[1][1].tolist() == [0.0, 0.0, 0.0] and ds[2][1].tolist() == [0.0, 1.0, 1.0]
    assert ds.labels().shape == (3, 3)


def test_csv_without_label_column_is_unlabelled(tmp_path, tiles):
    _png(tmp_path / "a.png", tiles[0])
    (tmp_path / "u.csv").write_text("path\na.png\n")
    ds = ImageFolderDataset(csv=tmp_path / "u.csv")
    assert ds.task is None and ds[0][1] == -1


# -- decoding -----------------------------------------------------------------------------------
def test_channels_and_resize(class_tree, tiles):
    gray = ImageFolderDataset(class_tree, channels=1)
    img = gray[3][0]
    expected = np.asarray(Image.fromarray(tiles[0]).convert("L"))
    assert img.shape == (40, 48, 1) and gray.in_channels == 1
    np.testing.assert_array_equal(img[..., 0], expected)
    small = ImageFolderDataset(class_tree, image_size=16)
    assert all(small[i][0].shape == (16, 16, 3) for i in range(len(small)))
    rect = ImageFolderDataset(class_tree, image_size=(20, 30))[3][0]
    np.testing.assert_array_equal(rect, np.asarray(Image.fromarray(tiles[0]).resize((30, 20), Image.BILINEAR)))


def test_gray_file_to_rgb_repeats_channel(tmp_path, tiles):
    g = np.asarray(Image.fromarray(tiles[1]).convert("L"))
    img = decode_image(_png(tmp_path / "g.png", g), channels=3)
    assert img.shape == (40, 48, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], g)


def test_16bit_scaled_by_its_max(tmp_path, tiles):
    x = tiles[2][..., 0].astype(np.uint16) * 16  # 12-bit values in a 16-bit file
    path = tmp_path / "deep.png"
    Image.fromarray(x).save(path)
    assert Image.open(path).mode.startswith("I")
    img = decode_image(path, channels=1)
    np.testing.assert_array_equal(img[..., 0], np.rint(x * (255.0 / x.max())).astype(np.uint8))


# -- DataLoader ---------------------------------------------------------------------------------
def test_dataloader_two_workers_same_pixels(class_tree):
    ds = ImageFolderDataset(class_tree, image_size=24)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    images = torch.cat([b[0] for b in loader]).numpy()
    labels = torch.cat([b[1] for b in loader]).tolist()
    np.testing.assert_array_equal(images, np.stack([ds[i][0] for i in range(len(ds))]))
    assert labels == ds.labels().tolist()


# -- bad inputs ---------------------------------------------------------------------------------
def test_path_escape_refused_unless_allowed(tmp_path, tiles):
    outside = _png(tmp_path / "outside.png", tiles[0])
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "up.csv").write_text("path,label\n../outside.png,a\n")
    (inner / "abs.csv").write_text(f"path,label\n{outside},a\n")
    with pytest.raises(DataError, match=r"up\.csv line 2: path '\.\./outside\.png' points outside .*allow_outside_root"):
        ImageFolderDataset(csv=inner / "up.csv")
    with pytest.raises(DataError, match=r"abs\.csv line 2: path .*outside\.png' points outside"):
        ImageFolderDataset(csv=inner / "abs.csv")
    ok = ImageFolderDataset(csv=inner / "up.csv", allow_outside_root=True)
    np.testing.assert_array_equal(ok[0][0], tiles[0])


def test_corrupt_image_fails_when_read(tmp_path, tiles):
    good = _png(tmp_path / "a" / "good.png", tiles[0])
    (tmp_path / "a" / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (tmp_path / "a" / "cut.png").write_bytes(good.read_bytes()[:200])
    ds = ImageFolderDataset(tmp_path)  # listing does not decode
    names = [p.name for p in ds.files]
    with pytest.raises(DataError, match=r"cannot read image .*junk\.png \(corrupt, truncated or not an image\)"):
        ds[names.index("junk.png")]
    with pytest.raises(DataError, match=r"cannot read image .*cut\.png"):
        ds[names.index("cut.png")]


@pytest.mark.parametrize(
    "csv_text, pattern",
    [
        ("file,label\na.png,x\n", r"needs a 'path' column .*found columns \['file', 'label'\]"),
        ("path,label\na.png,x\nmissing.png,y\n", r"line 3: image file 'missing\.png' not found"),
        ("path,label\na.png,\n", r"line 2: empty label"),
        ("path,label\na.png,zebra\n", r"line 2: label 'zebra' is not one of the class names \['x', 'y'\]"),
        ("path,label\n", r"no data rows"),
    ],
)
def test_bad_csv(tmp_path, tiles, csv_text, pattern):
    _png(tmp_path / "a.png", tiles[0])
    (tmp_path / "l.csv").write_text(csv_text)
    names = ["x", "y"] if "zebra" in csv_text else None
    with pytest.raises(DataError, match=r"l\.csv.*" + pattern):
        ImageFolderDataset(csv=tmp_path / "l.csv", class_names=names)


def test_csv_split_errors(tmp_path, tiles):
    _png(tmp_path / "a.png", tiles[0])
    (tmp_path / "n.csv").write_text("path,label\na.png,x\n")
    with pytest.raises(DataError, match=r"n\.csv: split 'train' asked for but the CSV has no 'split' column"):
        ImageFolderDataset(csv=tmp_path / "n.csv", split="train")
    (tmp_path / "s.csv").write_text("path,label,split\na.png,x,train\n")
    with pytest.raises(DataError, match=r"s\.csv: no rows with split 'test'; splits present: \['train'\]"):
        ImageFolderDataset(csv=tmp_path / "s.csv", split="test")
    with pytest.raises(DataError, match=r"CSV file .*nope\.csv not found"):
        ImageFolderDataset(csv=tmp_path / "nope.csv")


def test_folder_errors(tmp_path, tiles):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images in .*empty \(looked for \.png \.jpg \.jpeg \.tif \.tiff \.bmp"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "cls" / "a").mkdir(parents=True)
    _png(tmp_path / "cls" / "b" / "x.png", tiles[0])
    with pytest.raises(DataError, match=r"class folder .*a has no images"):
        ImageFolderDataset(tmp_path / "cls")
    _png(tmp_path / "mixed" / "loose.png", tiles[0])
    _png(tmp_path / "mixed" / "c" / "x.png", tiles[1])
    with pytest.raises(DataError, match=r"mixed holds both class subfolders and 1 loose images \(e\.g\. loose\.png\)"):
        ImageFolderDataset(tmp_path / "mixed")
    with pytest.raises(DataError, match=r"root .*absent is not a directory"):
        ImageFolderDataset(tmp_path / "absent")
    _png(tmp_path / "one" / "only" / "x.png", tiles[0])
    with pytest.raises(DataError, match=r"one: task 'binary' needs 2 classes, found 1: \['only'\]"):
        ImageFolderDataset(tmp_path / "one", task="binary")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"channels": 4}, r"channels must be 1 \(grayscale\) or 3 \(RGB\)"),
        ({"image_size": [1, 2, 3]}, r"image_size must be null, an int or \[height, width\]"),
        ({"image_size": 0}, r"image_size must be positive"),
        ({"task": "regression"}, r"task must be one of"),
        ({"root": None}, r"give 'root'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, pattern):
    args = {"root": tmp_path, **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        ImageFolderDataset(**args)


# -- limits and links ---------------------------------------------------------------------------
def png_header_only(path: Path, width: int, height: int) -> Path:
    """A ~100-byte PNG that *declares* ``width`` x ``height`` RGB pixels (its pixel data is a
    stub): enough for PIL to read the size, never decodable. Stands in for a decompression
    bomb without making the test allocate one."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_an_image_over_max_pixels_is_refused_from_its_header(tmp_path, tiles) -> None:
    import tracemalloc

    _png(tmp_path / "flat" / "ok.png", tiles[0])
    bomb = png_header_only(tmp_path / "flat" / "zz_bomb.png", 10000, 10000)
    ds = ImageFolderDataset(root=tmp_path / "flat")
    assert ds[0][0].shape == (40, 48, 3)
    tracemalloc.start()
    with pytest.raises(DataError, match=rf"image {bomb} is 10000 x 10000 = 100,000,000 pixels, more than "
                                        r"max_pixels=89,478,485; refused before decoding"):
        ds[1]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 << 20  # nothing near the 300 MB the pixels would take


def test_max_pixels_is_configurable(tmp_path, tiles) -> None:
    _png(tmp_path / "flat" / "a.png", tiles[0])
    strict = DATASETS.build({"name": "folder", "root": str(tmp_path / "flat"), "max_pixels": 1000})
    with pytest.raises(DataError, match=r"a\.png is 48 x 40 = 1,920 pixels, more than max_pixels=1,000"):
        strict[0]
    assert strict.describe()["max_pixels"] == 1000
    assert ImageFolderDataset(root=tmp_path / "flat", max_pixels=None)[0][0].shape == (40, 48, 3)
    for bad in (0, -5, 2.5, True, "many"):
        with pytest.raises(ConfigError, match=r"folder: max_pixels must be a positive integer or null"):
            ImageFolderDataset(root=tmp_path / "flat", max_pixels=bad)


def test_broken_symbolic_links_are_skipped_and_reported(tmp_path, tiles) -> None:
    root = tmp_path / "cls"
    _png(root / "a" / "ok.png", tiles[0])
    _png(root / "b" / "ok.png", tiles[1])
    (root / "a" / "dangling.png").symlink_to(tmp_path / "gone.png")
    (root / "a" / "self.png").symlink_to("self.png")  # a loop of one
    (root / "b" / "x.png").symlink_to("y.png")
    (root / "b" / "y.png").symlink_to("x.png")  # a loop of two
    (root / "b" / "good_link.png").symlink_to(root / "a" / "ok.png")  # followed, as documented
    with pytest.warns(UserWarning, match=r"folder: skipped 4 broken symbolic link\(s\) under .*cls "
                                         r"\(dangling, or part of a loop\): .*a/dangling\.png, .*a/self\.png, "
                                         r".*b/x\.png, .*b/y\.png$") as rec:
        ds = ImageFolderDataset(root=root)
    from medssl.errors import DataWarning

    assert rec[0].category is DataWarning
    assert len(ds) == 3 and ds.describe()["skipped_links"] == 4
    assert [p.name for p in ds.skipped_links] == ["dangling.png", "self.png", "x.png", "y.png"]


def test_the_warning_names_only_the_first_few_links(tmp_path, tiles) -> None:
    _png(tmp_path / "flat" / "ok.png", tiles[0])
    for i in range(8):
        (tmp_path / "flat" / f"l{i}.png").symlink_to(tmp_path / f"none{i}.png")
    with pytest.warns(UserWarning, match=r"skipped 8 .*l4\.png and 3 more$"):
        ImageFolderDataset(root=tmp_path / "flat")
