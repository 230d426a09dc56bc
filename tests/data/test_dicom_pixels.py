"""Pixels of real DICOM files (pydicom's wheel), against values computed here by hand
from the stored bytes and the tags: rescale to HU, windows, MONOCHROME1, signed 12-bit
data, colour (RGB, YBR_FULL_422), multi-frame and compressed transfer syntaxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.radiology_helpers import dicom_file, pydicom, raw_frames, rewrite, salt_env  # noqa: F401

from medssl.data.dicom import DicomDataset


def window_by_hand(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 written out: below the window 0, above 255, else linear."""
    lo = center - 0.5 - (width - 1) / 2
    hi = center - 0.5 + (width - 1) / 2
    out = np.empty(hu.shape)
    for idx, x in np.ndenumerate(hu):
        out[idx] = 0.0 if x <= lo else 255.0 if x > hi else ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.rint(out).astype(np.uint8)


def one(path: Path, tmp_path: Path, **kw: object) -> DicomDataset:
    folder = tmp_path / "one"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / path.name).write_bytes(path.read_bytes())
    return DicomDataset(root=folder, **kw)


def ct_hu() -> np.ndarray:
    p = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(p)
    assert ds.PixelRepresentation == 1 and ds.BitsAllocated == 16
    stored = raw_frames(p, "<i2", (128, 128)).astype(np.float64)
    return stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.mark.parametrize("name, center, width", [("lung", -600, 1500), ("mediastinum", 40, 400),
                                                 ("bone", 400, 1800), ("brain", 40, 80)])
def test_ct_named_windows_on_hounsfield_units(salt_env, tmp_path, name, center, width):
    hu = ct_hu()
    assert hu.min() < -800 and hu.max() > 1000  # rescale intercept -1024 applied: air and bone present
    img, label = one(dicom_file("CT_small.dcm"), tmp_path, window=name)[0]
    assert img.shape == (128, 128, 1) and img.dtype == np.uint8 and label == -1
    np.testing.assert_array_equal(img[..., 0], window_by_hand(hu, center, width))


def test_multi_window_stacks_lung_mediastinum_bone(salt_env, tmp_path):
    hu = ct_hu()
    ds = one(dicom_file("CT_small.dcm"), tmp_path, window="multi")
    img = ds[0][0]
    assert ds.in_channels == 3 and img.shape == (128, 128, 3)
    for c, (center, width) in enumerate([(-600, 1500), (40, 400), (400, 1800)]):
        np.testing.assert_array_equal(img[..., c], window_by_hand(hu, center, width))


def test_auto_uses_the_files_window_center_width(salt_env, tmp_path):
    p = dicom_file("MR_small.dcm")
    tags = pydicom.dcmread(p)
    assert (float(tags.WindowCenter), float(tags.WindowWidth)) == (600.0, 1600.0) and "RescaleSlope" not in tags
    expected = window_by_hand(raw_frames(p, "<i2", (64, 64)).astype(np.float64), 600.0, 1600.0)
    np.testing.assert_array_equal(one(p, tmp_path)[0][0][..., 0], expected)


def test_auto_without_a_window_is_min_max(salt_env, tmp_path):
    hu = ct_hu()  # CT_small has no WindowCenter / WindowWidth
    expected = np.rint((hu - hu.min()) / (hu.max() - hu.min()) * 255).astype(np.uint8)
    np.testing.assert_array_equal(one(dicom_file("CT_small.dcm"), tmp_path)[0][0][..., 0], expected)


def test_monochrome1_is_inverted(salt_env, tmp_path):
    """No MONOCHROME1 file ships locally: a copy of MR_small relabelled MONOCHROME1 (same
    stored pixels) must give 255 minus the MONOCHROME2 image."""
    p = dicom_file("MR_small.dcm")
    m1 = rewrite(p, tmp_path / "m1" / "m1.dcm", {}, PhotometricInterpretation="MONOCHROME1")
    expected = window_by_hand(raw_frames(p, "<i2", (64, 64)).astype(np.float64), 600.0, 1600.0)
    got = DicomDataset(root=m1.parent)[0][0][..., 0]
    np.testing.assert_array_equal(got, 255 - expected)


def test_signed_12_bit_data_is_sign_extended(salt_env, tmp_path):
    """CT_small's HU stored as 12-bit two's complement in 16-bit words (BitsStored 12,
    HighBit 11, the 4 high bits zero): negative values must come back negative."""
    hu = ct_hu().astype(np.int64)
    assert hu.min() >= -2048 and hu.max() <= 2047
    words = (hu & 0x0FFF).astype("<u2")
    src = dicom_file("CT_small.dcm")
    dst = rewrite(src, tmp_path / "s12" / "s12.dcm", {}, BitsStored=12, HighBit=11, RescaleIntercept=0,
                  PixelData=words.tobytes())
    w = {"center": 0, "width": 4096, "function": "LINEAR_EXACT"}
    got = DicomDataset(root=dst.parent, window=w)[0][0][..., 0]
    expected = np.rint(np.clip(hu / 4096 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, expected)
    assert (got[hu < -500] < 100).all()  # read unsigned they would be ~3500 HU: white


def test_rgb_as_stored(salt_env, tmp_path):
    p = dicom_file("SC_rgb_small_odd.dcm")
    assert pydicom.dcmread(p).PlanarConfiguration == 0
    expected = raw_frames(p, "u1", (3, 3, 3))
    ds = one(p, tmp_path)
    assert ds.in_channels == 3
    np.testing.assert_array_equal(ds[0][0], expected)


def test_ybr_full_422_converted_to_rgb(salt_env, tmp_path):
    """4:2:2 bytes are Y0 Y1 Cb Cr per pixel pair; RGB by PS3.3 C.7.6.3.1.2."""
    p = dicom_file("SC_ybr_full_422_uncompressed.dcm")
    pairs = raw_frames(p, "u1", (100, 50, 4)).astype(np.float64)
    y = np.stack([pairs[..., 0], pairs[..., 1]], axis=-1).reshape(100, 100)
    cb = np.repeat(pairs[..., 2], 2, axis=1) - 128
    cr = np.repeat(pairs[..., 3], 2, axis=1) - 128
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    expected = np.clip(np.rint(rgb), 0, 255)
    got = one(p, tmp_path)[0][0].astype(np.float64)
    assert np.abs(got - expected).max() <= 1  # rounding of the conversion
    assert rgb.std(axis=(0, 1)).min() > 10  # a colour image, not gray


def test_rgb_to_one_channel_is_luma(salt_env, tmp_path):
    p = dicom_file("SC_rgb_small_odd.dcm")
    rgb = raw_frames(p, "u1", (3, 3, 3)).astype(np.float64)
    luma = np.floor(rgb @ np.array([299, 587, 114]) / 1000 + 0.5)  # PIL's ITU-R 601-2, rounded
    got = one(p, tmp_path, channels=1)[0][0][..., 0]
    assert np.abs(got - luma).max() <= 1


def test_multi_frame_each_frame_an_item_or_one_chosen(salt_env, tmp_path):
    p = dicom_file("rtdose.dcm")
    frames = raw_frames(p, "<u4", (15, 10, 10)).astype(np.float64)

    def minmax(a: np.ndarray) -> np.ndarray:
        return np.rint((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)

    every = one(p, tmp_path)
    assert len(every) == 15
    for k in (0, 7, 14):
        np.testing.assert_array_equal(every[k][0][..., 0], minmax(frames[k]))
    middle = one(p, tmp_path, frames="middle")
    assert len(middle) == 1
    np.testing.assert_array_equal(middle[0][0][..., 0], minmax(frames[7]))
    third = one(p, tmp_path, frames=3)
    np.testing.assert_array_equal(third[0][0][..., 0], minmax(frames[3]))
    with pytest.raises(Exception, match="frame 40 asked for but the object has 15 frames"):
        one(p, tmp_path, frames=40)


@pytest.mark.parametrize("compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                        "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm",
                                        "MR_small_implicit.dcm"])
def test_lossless_encodings_give_the_uncompressed_pixels(salt_env, tmp_path, compressed):
    p = dicom_file("MR_small.dcm")
    expected = window_by_hand(raw_frames(p, "<i2", (64, 64)).astype(np.float64), 600.0, 1600.0)
    np.testing.assert_array_equal(one(dicom_file(compressed), tmp_path)[0][0][..., 0], expected)


def test_rle_multi_frame_matches_uncompressed(salt_env, tmp_path):
    plain = one(dicom_file("rtdose.dcm"), tmp_path / "a")
    rle = one(dicom_file("rtdose_rle.dcm"), tmp_path / "b")
    assert len(plain) == len(rle) == 15
    for k in (0, 9):
        np.testing.assert_array_equal(plain[k][0], rle[k][0])


def test_voi_lut_sequence_is_used_by_auto(salt_env, tmp_path):
    """A VOI LUT added to a copy of MR_small: out = (v - first) * 2 clipped to 12 bits."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    p = dicom_file("MR_small.dcm")
    stored = raw_frames(p, "<i2", (64, 64)).astype(np.int64)
    first, entries = int(stored.min()), int(stored.max() - stored.min() + 1)
    lut = np.clip(np.arange(entries) * 2, 0, 4095).astype("<u2")
    item = Dataset()
    item.LUTDescriptor = [entries, first, 12]
    item.LUTData = lut.tobytes()  # OW, as scanners write it
    dst = rewrite(p, tmp_path / "voi" / "voi.dcm", {}, VOILUTSequence=Sequence([item]))
    got = DicomDataset(root=dst.parent)[0][0][..., 0]
    expected = np.rint(np.clip((stored - first) * 2, 0, 4095) / 4095 * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, expected)


def test_window_on_colour_data_is_refused(salt_env, tmp_path):
    ds = one(dicom_file("SC_rgb_small_odd.dcm"), tmp_path, window="lung")
    with pytest.raises(Exception, match="applies to grayscale images; this file is RGB"):
        ds[0]


@pytest.mark.parametrize("wide", ["SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"])
def test_16_and_32_bit_rgb_scale_to_the_8_bit_image(salt_env, tmp_path, wide):
    """pydicom's 16 / 32-bit RGB test images are its 8-bit one times 257 / 16843009
    (checked below on the decoded samples): scaled by 2**BitsStored - 1 they must give
    exactly the 8-bit pixels."""
    eight = pydicom.dcmread(dicom_file("SC_rgb_rle.dcm")).pixel_array.astype(np.int64)
    stored = pydicom.dcmread(dicom_file(wide)).pixel_array.astype(np.int64)
    assert np.array_equal(stored, eight * (257 if "16" in wide else 16843009))
    np.testing.assert_array_equal(one(dicom_file(wide), tmp_path)[0][0], eight.astype(np.uint8))


def test_palette_colour_through_its_lookup_tables(salt_env, tmp_path):
    """PALETTE COLOR: each stored index looks up R, G, B in the 16-bit palette tables
    (descriptor [256 entries, first index 0, 16 bits]); 16 bits -> 8 by / 65535 * 255."""
    p = dicom_file("examples_palette.dcm")
    ds = pydicom.dcmread(p)
    entries, first, bits = ds.RedPaletteColorLookupTableDescriptor
    assert (entries, first, bits, ds.BitsAllocated) == (256, 0, 16, 8)
    index = raw_frames(p, "u1", (ds.Rows, ds.Columns)).astype(np.int64)
    luts = [np.frombuffer(getattr(ds, f"{c}PaletteColorLookupTableData"), "<u2").astype(np.float64)
            for c in ("Red", "Green", "Blue")]
    rgb = np.stack([lut[np.clip(index - first, 0, entries - 1)] for lut in luts], axis=-1)
    expected = np.rint(rgb / 65535 * 255).astype(np.uint8)
    got = one(p, tmp_path)[0][0]
    assert got.shape == (ds.Rows, ds.Columns, 3)
    np.testing.assert_array_equal(got, expected)


def test_multi_frame_jpeg_ybr_matches_pillow_per_frame(salt_env, tmp_path):
    """examples_ybr_color.dcm: 30 frames of JPEG baseline in YBR_FULL_422. Each frame is an
    item; each equals Pillow's own decoding of that frame's JPEG bytes (another decoder,
    YCbCr -> RGB by PIL) to within the IDCT rounding of two decoders."""
    import io

    from PIL import Image
    from pydicom.encaps import generate_fragmented_frames

    p = dicom_file("examples_ybr_color.dcm")
    raw = pydicom.dcmread(p)
    frames = [b"".join(f) for f in generate_fragmented_frames(raw.PixelData, number_of_frames=30)]
    ds = one(p, tmp_path, frames="all")
    assert len(ds) == 30 and ds.in_channels == 3
    for k in (0, 17, 29):
        with Image.open(io.BytesIO(frames[k])) as im:
            ref = np.asarray(im.convert("RGB")).astype(np.int64)
        got = ds[k][0].astype(np.int64)
        assert got.shape == ref.shape == (240, 320, 3)
        assert np.abs(got - ref).max() <= 3 and np.abs(got - ref).mean() < 0.5
    assert not np.array_equal(ds[0][0], ds[29][0])


def test_modality_lut_sequence_replaces_rescale(salt_env, tmp_path):
    """A ModalityLUTSequence added to a copy of MR_small (out = 3 * (v - first) + 100,
    16-bit) takes the place of slope / intercept; the window then applies to its output."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    p = dicom_file("MR_small.dcm")
    stored = raw_frames(p, "<i2", (64, 64)).astype(np.int64)
    first, entries = int(stored.min()), int(stored.max() - stored.min() + 1)
    item = Dataset()
    item.LUTDescriptor = [entries, first, 16]
    item.ModalityLUTType = "US"
    item.LUTData = (np.arange(entries) * 3 + 100).astype("<u2").tobytes()
    dst = rewrite(p, tmp_path / "mlut" / "m.dcm", {}, ModalityLUTSequence=Sequence([item]))
    got = DicomDataset(root=dst.parent, window={"center": 2000, "width": 4000})[0][0][..., 0]
    np.testing.assert_array_equal(got, window_by_hand((stored - first) * 3.0 + 100, 2000, 4000))


def test_file_sigmoid_voi_function(salt_env, tmp_path):
    """VOILUTFunction SIGMOID on a copy of MR_small (center 600, width 1600 from the file):
    y = 255 / (1 + exp(-4 (x - c) / w))."""
    p = dicom_file("MR_small.dcm")
    dst = rewrite(p, tmp_path / "sig" / "s.dcm", {}, VOILUTFunction="SIGMOID")
    x = raw_frames(p, "<i2", (64, 64)).astype(np.float64)
    expected = np.rint(255.0 / (1.0 + np.exp(-4.0 * (x - 600.0) / 1600.0))).astype(np.uint8)
    np.testing.assert_array_equal(DicomDataset(root=dst.parent)[0][0][..., 0], expected)


def test_enhanced_functional_groups_give_the_frames_rescale_and_window(salt_env, tmp_path):
    """A copy of CT_small as an enhanced object: no top-level rescale / window, the shared
    functional groups hold slope 1 / intercept -1000, the per-frame group a 40 / 400
    window. The data set must use those (top-level values would give other pixels)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    src = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(src)
    del ds.RescaleSlope, ds.RescaleIntercept
    pvt, voi = Dataset(), Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, -1000, "HU"
    voi.WindowCenter, voi.WindowWidth = 40, 400
    shared, frame0 = Dataset(), Dataset()
    shared.PixelValueTransformationSequence = Sequence([pvt])
    frame0.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence([frame0])
    (tmp_path / "enh").mkdir()
    ds.save_as(tmp_path / "enh" / "e.dcm", enforce_file_format=False)
    hu = raw_frames(src, "<i2", (128, 128)).astype(np.float64) - 1000
    got = DicomDataset(root=tmp_path / "enh")[0][0][..., 0]
    np.testing.assert_array_equal(got, window_by_hand(hu, 40, 400))
