"""Find the DICOM images of a folder tree (or a list of paths) from their headers alone.

Every regular file under the root whose name ends in ``.dcm`` / ``.dicom`` / ``.ima``, has
no suffix (PACS exports often drop it), or starts with the ``DICM`` preamble is a
candidate. Its header is read without the pixel data; what is not an image is *skipped
with a reason* and counted (:data:`REASONS`), never a crash:

* ``not_dicom``: not a DICOM file (no preamble / file meta, and no image when read with
  ``force=True``: old ACR-NEMA style objects with pixels are kept, ``forced``);
* ``dicomdir``: a DICOMDIR, the index of a DICOM medium;
* ``no_pixel_data``: an object without pixels (structured report, presentation state,
  RT plan, key-object note, waveform, ...);
* ``not_an_image``: pixels that are not an image to learn from (SEG masks, RTSTRUCT);
* ``unreadable``: a header pydicom cannot parse.

Identifying values are read only to be replaced by pseudonyms
(:mod:`medssl.data.pseudonym`): a record keeps the pseudonym of PatientID (else
PatientName, else StudyInstanceUID, else the file) and of StudyInstanceUID, never the ids.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from medssl.data.pseudonym import pseudonym
from medssl.errors import DataError

SUFFIXES = (".dcm", ".dicom", ".ima", "")
REASONS: Dict[str, str] = {
    "not_dicom": "not a DICOM file",
    "dicomdir": "DICOMDIR (an index of other files, no image)",
    "no_pixel_data": "no pixel data (report, presentation state, plan, waveform, ...)",
    "not_an_image": "pixels that are not an image (segmentation mask, RT structure)",
    "unreadable": "DICOM header that cannot be read",
}
NOT_IMAGES = ("SEG", "RTSTRUCT")
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class DicomRecord:
    """One image object: where it is, its geometry and its pseudonymous patient / study."""

    path: Path
    frames: int
    rows: int
    columns: int
    photometric: str
    modality: str
    transfer_syntax: str
    patient: str
    study: str
    forced: bool = False  # no file meta (old ACR-NEMA style): read with force=True, syntax inferred


@dataclass(frozen=True)
class Skipped:
    """A candidate file that is not an image: ``reason`` is a key of :data:`REASONS`."""

    path: Path
    reason: str
    detail: str = ""


def has_preamble(path: Path) -> bool:
    """True when ``path`` has the ``DICM`` marker after its 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def candidates(root: Path) -> List[Path]:
    """The files under ``root`` (hidden parts skipped) that may be DICOM, sorted."""
    found = []
    for p in root.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(root).parts) or not p.is_file():
            continue
        if p.suffix.lower() in SUFFIXES or p.name.upper() == "DICOMDIR" or has_preamble(p):
            found.append(p)
    return sorted(found)


def _text(ds: object, key: str) -> str:
    value = getattr(ds, key, None)
    return str(value).strip() if value not in (None, "") else ""


def read_record(path: Path, salt: bytes) -> "DicomRecord | Skipped":
    """The header of ``path`` as a :class:`DicomRecord`, or why it is :class:`Skipped`.

    Remembered per process for an unchanged file (same size and modification time) and
    salt: ``data info`` opens a tree once per split, ``transfer`` twice, ``pretrain`` with a
    ``val_data`` twice, and a header costs about 2 ms."""
    try:
        st = path.stat()
    except OSError as exc:
        return Skipped(path, "unreadable", f"{type(exc).__name__}: {exc}")
    return _read_record(path, st.st_size, st.st_mtime_ns, salt)


@functools.lru_cache(maxsize=1 << 20)
def _read_record(path: Path, size: int, mtime_ns: int, salt: bytes) -> "DicomRecord | Skipped":  # size, mtime: the key
    import pydicom
    from pydicom.errors import InvalidDicomError

    if path.name.upper() == "DICOMDIR":
        return Skipped(path, "dicomdir")
    forced = False
    try:
        with warnings.catch_warnings():  # pydicom warns about every odd element; the image is what matters here
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=False, defer_size=256)
            except InvalidDicomError:
                # No preamble / file meta: an old-style object may still be an image. Kept only
                # when forcing finds one (pixels, rows, columns): text forced through is garbage.
                ds, forced = pydicom.dcmread(path, stop_before_pixels=False, defer_size=256, force=True), True
                if not ("PixelData" in ds and "Rows" in ds and "Columns" in ds):
                    return Skipped(path, "not_dicom")
    except Exception as exc:  # pydicom raises many kinds on a damaged header
        return Skipped(path, "not_dicom" if forced else "unreadable", "" if forced else f"{type(exc).__name__}: {exc}")
    meta = getattr(ds, "file_meta", None)
    sop = _text(meta, "MediaStorageSOPClassUID") or _text(ds, "SOPClassUID")
    if sop == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return Skipped(path, "dicomdir")
    modality = _text(ds, "Modality") or "unknown"
    if not any(tag in ds for tag in PIXEL_TAGS):
        return Skipped(path, "no_pixel_data", modality)
    if modality in NOT_IMAGES:
        return Skipped(path, "not_an_image", modality)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        return Skipped(path, "unreadable", f"image geometry (Rows / Columns / NumberOfFrames): {exc}")
    syntax = _text(meta, "TransferSyntaxUID") or forced_syntax(ds)
    study_uid = _text(ds, "StudyInstanceUID")
    patient_value = _text(ds, "PatientID") or _text(ds, "PatientName")
    if patient_value:
        patient = pseudonym(salt, "patient", patient_value)
    elif study_uid:  # no patient tag: the study is the safest unit left
        patient = pseudonym(salt, "patient", "study:" + study_uid)
    else:
        patient = pseudonym(salt, "patient", "file:" + str(path.resolve()))
    study = pseudonym(salt, "study", study_uid or "patient:" + patient)
    return DicomRecord(path, max(frames, 1), rows, columns, _text(ds, "PhotometricInterpretation"),
                       modality, syntax, patient, study, forced)


def forced_syntax(ds: object) -> str:
    """The transfer syntax a file without file meta was read in (pydicom's guess while reading)."""
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit in (None, True):
        return "1.2.840.10008.1.2"
    return "1.2.840.10008.1.2.1" if little in (None, True) else "1.2.840.10008.1.2.2"


def scan(paths: Iterable[Path], salt: bytes) -> Tuple[List[DicomRecord], List[Skipped]]:
    """Headers of ``paths``: the image records, and the skipped files with reasons."""
    records: List[DicomRecord] = []
    skipped: List[Skipped] = []
    for p in paths:
        r = read_record(p, salt)
        (records if isinstance(r, DicomRecord) else skipped).append(r)  # type: ignore[arg-type]
    return records, skipped


def skip_counts(skipped: Iterable[Skipped]) -> Dict[str, int]:
    """``{reason: count}`` in the order of :data:`REASONS`."""
    counts = {k: 0 for k in REASONS}
    for s in skipped:
        counts[s.reason] += 1
    return {k: v for k, v in counts.items() if v}


def skip_summary(skipped: List[Skipped], shown: int = 3) -> str:
    """``"2 not a DICOM file (a.dcm, b.dcm), 1 DICOMDIR (...)"`` for warnings and errors."""
    parts = []
    for reason, n in skip_counts(skipped).items():
        names = [s.path.name for s in skipped if s.reason == reason][:shown]
        parts.append(f"{n} {REASONS[reason]} ({', '.join(names)}{', ...' if n > shown else ''})")
    return "; ".join(parts)


def require_images(records: List[DicomRecord], skipped: List[Skipped], where: str) -> None:
    """DataError when nothing readable was found, saying what was found instead."""
    if records:
        return
    found = f"; skipped {skip_summary(skipped)}" if skipped else ""
    raise DataError(f"{where}: no DICOM image found (looked for .dcm / .dicom / .ima files, files without a suffix "
                    f"and files with the DICM preamble){found}")


def pick_frames(records: List[DicomRecord], frames: "str | int") -> List[Tuple[int, Optional[int]]]:
    """``[(record index, frame or None)]``: ``"all"`` = every frame an item, ``"middle"`` /
    an int = that frame of each object (``None`` = a single-frame object)."""
    items: List[Tuple[int, Optional[int]]] = []
    for i, r in enumerate(records):
        if r.frames == 1:
            items.append((i, None))
        elif frames == "all":
            items.extend((i, f) for f in range(r.frames))
        elif frames == "middle":
            items.append((i, r.frames // 2))
        else:
            k = int(frames)
            if not -r.frames <= k < r.frames:
                raise DataError(f"{r.path}: frame {k} asked for but the object has {r.frames} frames")
            items.append((i, k % r.frames))
    return items
