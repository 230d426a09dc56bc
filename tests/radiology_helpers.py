"""Real DICOM / NIfTI files from pydicom's and nibabel's wheels, and test trees built
from copies of them (several patients by rewriting the patient tags).

Only files present on disk in the installed wheels are used: pydicom 3 keeps a subset of
its test files locally (CT_small, MR_small and variants, RGB / YBR secondary captures,
RT dose multi-frame, ...) and would download the rest (US1_UNCR, ...): those are never
asked for here.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

TEST_SALT = "medssl-test-salt-0123456789abcdef"


def dicom_file(name: str) -> Path:
    """A DICOM test file shipped in pydicom's wheel (never downloaded)."""
    from pydicom.data import get_testdata_file

    folder = Path(get_testdata_file("CT_small.dcm")).parent
    p = folder / name
    if not p.exists():
        pytest.skip(f"{name} is not on disk in this pydicom wheel (pydicom would download it)")
    return p


def nifti_file(name: str) -> Path:
    """A NIfTI test file shipped in nibabel's wheel."""
    p = Path(nib.__file__).parent / "tests" / "data" / name
    if not p.is_file():
        pytest.skip(f"{name} is not in this nibabel wheel")
    return p


def patient(i: int) -> Dict[str, str]:
    """Identifying values of fake patient ``i``: what the privacy test looks for."""
    return {"PatientName": f"Doe^Jane{i:02d}", "PatientID": f"MRN{48151623 + i}", "PatientBirthDate": f"19{50 + i}0704",
            "StudyInstanceUID": f"1.2.826.0.1.3680043.8.498.{7000 + i}", "AccessionNumber": f"ACC{9000 + i}"}


def rewrite(src: Path, dst: Path, tags: Dict[str, str], **extra: object) -> Path:
    """Copy ``src`` to ``dst`` with ``tags`` (and ``extra`` elements) replaced."""
    ds = pydicom.dcmread(src)
    for k, v in {**tags, **extra}.items():
        setattr(ds, k, v)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=False)
    return dst


def dicom_tree(root: Path, n_patients: int = 4, per_patient: int = 2, source: Union[str, Sequence[str]] = "CT_small.dcm",
               junk: bool = False) -> Tuple[Path, List[Path]]:
    """``root/<patient folder>/IMG<k>.dcm`` copies of ``source`` (a list: one file per
    patient, in turn) for ``n_patients`` fake patients (tags from :func:`patient`); with
    ``junk``: a text file named .dcm, a DICOMDIR and a structured report beside them.
    Returns ``(root, image paths)``."""
    sources = [source] if isinstance(source, str) else list(source)
    paths = []
    for i in range(n_patients):
        for k in range(per_patient):
            src = dicom_file(sources[i % len(sources)])
            paths.append(rewrite(src, root / f"case{i:02d}" / f"IMG{k}.dcm", patient(i)))
    if junk:
        (root / "notes.dcm").write_text("this is not a DICOM file\n")
        shutil.copy(dicom_file("dicomdirtests") / "DICOMDIR", root / "DICOMDIR")
        shutil.copy(dicom_file("test-SR.dcm"), root / "case00" / "report.dcm")
    return root, paths


@pytest.fixture
def salt_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fixed id salt in the environment (never the user's own key file)."""
    monkeypatch.setenv("MEDSSL_ID_SALT", TEST_SALT)
    monkeypatch.delenv("MEDSSL_ID_SALT_FILE", raising=False)
    return TEST_SALT


def raw_frames(path: Path, dtype: str, shape: Tuple[int, ...]) -> "object":
    """The stored pixel values of an *uncompressed* file, read from the PixelData bytes
    with numpy (independent of pydicom's pixel handling)."""
    import numpy as np

    ds = pydicom.dcmread(path)
    n = int(np.prod(shape))
    return np.frombuffer(ds.PixelData, dtype=dtype, count=n).reshape(shape)


