"""A DICOM export through the whole tool: ``data split --by patient``, ``pretrain``
(configs/ct_dicom.yaml), ``transfer`` (configs/transfer/ct_dicom.yaml, with its
patient-level report) and ``embed``; then every file written is searched for the test
patients' identifying values (names, ids, birth dates, accession numbers, study UIDs),
inside zip members (``.npz``) too."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Iterator, List

from tests.radiology_helpers import dicom_tree, patient, salt_env  # noqa: F401

from medssl.cli import main

REPO = Path(__file__).resolve().parents[2]
N_PATIENTS = 8


def blobs(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    yield data
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                yield name.encode() + z.read(name)


def written_files(*dirs: Path) -> List[Path]:
    return [p for d in dirs for p in d.rglob("*") if p.is_file()]


def test_dicom_pretrain_transfer_embed_write_no_patient_data(salt_env, tmp_path, capsys):
    # four different real images (CT, MR, an MR with overlays, a JPEG 2000 CT), two copies per patient
    sources = ["CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "693_J2KI.dcm"]
    root, paths = dicom_tree(tmp_path / "export", n_patients=N_PATIENTS, per_patient=2, source=sources, junk=True)
    rows = ["path,label"] + [f"{p.relative_to(root)},{'lesion' if i // 2 % 2 else 'normal'}" for i, p in enumerate(paths)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    before = set(written_files(root))
    assert main(["data", "split", str(root), "--by", "patient", "--val", "0", "--test", "0.5", "--seed", "1"]) == 0
    run, out, emb = tmp_path / "run", tmp_path / "transfer", tmp_path / "emb.npz"
    assert main(["pretrain", str(REPO / "configs" / "ct_dicom.yaml"), "--no-progress", f"--out-dir={run}",
                 f"data.root={root}", "data.image_size=32", "augment.image_size=32", "model.backbone=test_resnet",
                 "train.epochs=1", "train.batch_size=4", "support_set.size=8", "train.log_every=1",
                 "train.num_workers=0"]) == 0
    assert (run / "encoder.safetensors").is_file()
    assert main(["transfer", str(REPO / "configs" / "transfer" / "ct_dicom.yaml"), f"encoder={run}",
                 f"data.csv={root / 'labels.csv'}", "data.image_size=32", f"out={out}", "seeds=1",
                 "report.n_boot=50", "report.tsne_max_points=20", "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    pl = rep["slide_level"]
    assert pl["unit"] == "patient" and pl["n_slides"] == N_PATIENTS // 2
    assert "## Patient level" in (out / "report.md").read_text()
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(f"data: {{name: dicom, csv: {root / 'labels.csv'}, window: multi, image_size: 32}}\n")
    assert main(["embed", "--encoder", str(run), "--data", str(data_yaml), "--split", "test",
                 "--out", str(emb), "--no-progress"]) == 0
    printed = capsys.readouterr()
    written = written_files(run, out) + [emb, root / "splits.json"]
    assert set(written_files(root)) - before == {root / "splits.json"}  # the export itself is left alone
    secrets = [v for i in range(N_PATIENTS) for k, v in patient(i).items()]
    secrets += [f"{v[:4]}-{v[4:6]}-{v[6:]}" for i in range(N_PATIENTS) for k, v in patient(i).items() if k.endswith("Date")]
    secrets += ["Doe^Jane"]  # whole tokens: a 3-byte "Doe" turns up by chance in binary weights
    leaks = [(str(p), s) for p in written for blob in blobs(p) for s in secrets if s.encode() in blob]
    assert not leaks, leaks
    assert not [s for s in secrets if s in printed.out + printed.err]
    assert len(written) > 8  # metrics, checkpoints, encoder, config, report, plots, features, embeddings
