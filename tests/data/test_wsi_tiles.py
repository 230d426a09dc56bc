"""The ``wsi_tiles`` dataset (medssl/data/wsi_tiles.py) on a real tiling: lazy per-process
shard handles, slide-level splits, slide labels, sampler hook, errors."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medssl.data import open_dataset
from medssl.data.wsi_tiles import MAX_OPEN, WSITiles, read_slide_labels
from medssl.errors import DataError
from medssl.registry import DATASETS
from medssl.wsi.slide import open_slide
from medssl.wsi.splits import write_splits
from tests.wsi.conftest import COHORT_SLIDES, cohort, pyramid, svs_crop  # noqa: F401  (fixtures)

pytestmark = pytest.mark.shared_data


def test_reads_every_tile_lazily(cohort, pyramid):
    ds = DATASETS.build({"name": "wsi_tiles", "root": str(cohort)})
    assert len(ds) == 5 * 64 and ds.task is None and ds.split == "all" and ds._handles == {}
    img, label = ds[100]
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and label == -1
    meta = ds.tile_meta(100)
    assert meta["slide"] == "b" and meta["level"] == 1 and meta["mpp"] == pytest.approx(0.5)
    with open_slide(pyramid) as slide:  # tile 100 is the slide region at its meta corner
        np.testing.assert_array_equal(img, slide.read(meta["x"], meta["y"], 1, 64, 64))
    assert ds.slide_names == list(COHORT_SLIDES)
    assert np.bincount(ds.slide_index()).tolist() == [64] * 5
    assert ds.describe()["slides"] == 5 and ds.describe()["shards"] == 15


def test_open_dataset_detects_a_tiling(cohort):
    ds = open_dataset(cohort)
    assert isinstance(ds, WSITiles) and len(ds) == 320


def test_handles_are_per_process_and_bounded(cohort):
    ds = WSITiles(cohort)
    for i in range(0, len(ds), 20):
        ds[i]
    assert len(ds._handles) <= MAX_OPEN
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._handles == {} and np.array_equal(clone[7][0], ds[7][0])
    ds.close()
    assert ds._handles == {}


class _Tagged(WSITiles):
    """Items are (index, reading process, pixel sum): what a test needs to follow reads."""

    def __getitem__(self, index):
        img, _ = super().__getitem__(index)
        return index, os.getpid(), int(img.sum())


def test_dataloader_workers_with_the_shard_sampler(cohort):
    ds = _Tagged(cohort, tiles_per_slide=40)
    sampler = ds.make_sampler(batch_size=16, seed=0, num_workers=2)
    loader = DataLoader(ds, batch_size=16, sampler=sampler, num_workers=2)
    batches = list(loader)
    assert len(batches) == sampler.batches_per_epoch == 200 // 16 // 2 * 2
    idx = torch.cat([b[0] for b in batches]).numpy()
    assert len(set(idx.tolist())) == len(idx)  # no tile twice in the epoch
    assert np.bincount(ds.slide_index()[idx]).max() <= 40  # balanced: at most 40 tiles of a slide
    shard_of = {pid: set() for pid in torch.cat([b[1] for b in batches]).tolist()}
    assert len(shard_of) == 2
    for b in batches:
        for i, pid in zip(b[0].tolist(), b[1].tolist()):
            shard_of[pid].add(ds.locate(i)[0])
    a, b = shard_of.values()
    assert len(a & b) <= 1  # each worker reads its own shards (a boundary shard may be shared)


def test_slide_level_split_and_labels(cohort, tmp_path):
    doc = write_splits(cohort, val=0.2, test=0.2, seed=0)
    labels = tmp_path / "slides.csv"
    labels.write_text("slide,label\n" + "".join(f"{s},{'tumor' if s in 'ace' else 'normal'}\n" for s in COHORT_SLIDES))
    parts = {}
    for split in ("train", "val", "test"):
        ds = WSITiles(cohort, split=split, labels=labels)
        assert ds.slide_names == doc["splits"][split] and len(ds) == 64 * len(ds.slide_names)
        assert ds.task == "binary" and ds.class_names == ("normal", "tumor")
        want = [1 if ds.slide_names[k] in "ace" else 0 for k in ds.slide_index()]
        assert ds.labels().tolist() == want and ds[len(ds) - 1][1] == want[-1]
        parts[split] = set(ds.slide_names)
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["val"])
    assert WSITiles(cohort, split="valid").split == "val"
    (cohort / "splits.json").unlink()


def test_split_without_splits_file(cohort):
    with pytest.raises(DataError, match=r"no splits.json; make slide-level splits first: medssl data split"):
        WSITiles(cohort, split="train")
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        WSITiles(cohort, split="holdout")


def test_label_csv_problems_are_named(cohort, tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("slide,label\na,1\nb,0\n")
    with pytest.raises(DataError, match=r"l.csv: no label for 3 slide\(s\) of .* \(c, d, e\); add them"):
        WSITiles(cohort, labels=csv)
    csv.write_text("name,y\na,1\n")
    with pytest.raises(DataError, match="expected a header with columns slide,label"):
        read_slide_labels(csv)
    csv.write_text("slide,label\na,1\na,0\n")
    with pytest.raises(DataError, match="slide 'a' has two labels"):
        read_slide_labels(csv)
    csv.write_text("slide,label\n" + "".join(f"{s},1\n" for s in COHORT_SLIDES))
    with pytest.raises(DataError, match="only one class"):
        WSITiles(cohort, labels=csv)
    assert read_slide_labels_ints(tmp_path) == ({"a": 2, "b": 0}, ["0", "1", "2"])


def read_slide_labels_ints(tmp_path):
    p = tmp_path / "ints.csv"
    p.write_text("slide,label\na,2\nb,0\n")
    return read_slide_labels(p)


def test_missing_or_damaged_shard_is_named(cohort, tmp_path):
    copy = tmp_path / "tiles"
    shutil.copytree(cohort, copy)
    first = sorted((copy / "shards").iterdir())[0]
    ds = WSITiles(copy)
    victim = ds.shard_files[-1]
    victim.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match=f"{victim.name}: cannot open the tile shard"):
        ds[len(ds) - 1]
    os.remove(ds.shard_files[0])
    with pytest.raises(DataError, match="shard listed in .*manifest.json is missing"):
        WSITiles(copy)
    assert first.name.endswith(".h5")


def test_pretraining_uses_the_shard_sampler(cohort, tmp_path):
    from medssl.data.wsi_sampler import ShardSampler
    from medssl.train.config import load_pretrain_config
    from medssl.train.loop import Pretrainer
    from pretrain_helpers import tiny_cfg

    cfg = tiny_cfg(tmp_path, tmp_path / "run", max_steps=2, batch_size=8)
    cfg["data"] = {"name": "wsi_tiles", "root": str(cohort), "tiles_per_slide": 16}
    trainer = Pretrainer(load_pretrain_config(data=cfg), progress=False)
    assert isinstance(trainer.sampler, ShardSampler) and trainer.steps_per_epoch == 5 * 16 // 8
    res = trainer.fit()
    assert res.steps == 2 and np.isfinite(res.last_loss)


def test_source_files_cover_manifest_splits_labels_and_shards(cohort, tmp_path):
    ds = WSITiles(cohort)
    assert ds.source_files() == [cohort / "manifest.json", *ds.shard_files] and len(ds.shard_files) == 15


def test_data_info_lists_splits_and_shards(cohort, capsys):
    from medssl.cli import main

    assert main(["data", "info", str(cohort), "--no-checksum"]) == 0
    out = capsys.readouterr().out
    assert "format: wsi_tiles" in out and "split all: 320 images of shape [64, 64, 3], task None" in out
    assert "split train: not available (" in out and "medssl data split" in out
    assert out.count(".h5:") == 15 and "manifest.json:" in out


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_two_ranks_pretrain_in_lockstep_on_shards(cohort, tmp_path):
    """Under torchrun (2 gloo ranks, 2 DataLoader workers each, slide balancing) both ranks
    get the same number of batches from disjoint shard runs: the job finishes every step
    (a rank with fewer batches would leave the other waiting in a collective)."""
    import json

    import yaml

    from pretrain_helpers import tiny_cfg
    from tests.train.test_distributed import torchrun

    cfg = tiny_cfg(tmp_path, tmp_path / "run", max_steps=8, batch_size=8, num_workers=2, ckpt_every=8)
    cfg["data"] = {"name": "wsi_tiles", "root": str(cohort), "tiles_per_slide": 20}
    cfg["train"]["device"] = "cpu"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, _ = torchrun(["-m", "medssl", "pretrain", str(path), "--no-progress"], cwd=tmp_path, timeout=180)
    assert rc == 0, out[-4000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 5 slides x 20 tiles = 100 per epoch in 4 runs of 25 (2 ranks x 2 workers): 3 batches of
    # 8 per worker, 6 per rank and epoch; 8 steps reach the second epoch
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["epoch"] for r in rows] == [0] * 6 + [1] * 2


def test_relative_slide_labels_are_found_in_the_tiling_and_a_missing_one_names_both_places(cohort, tmp_path,
                                                                                            monkeypatch):
    """configs/transfer/wsi.yaml says `labels: slides.csv`: looked up in the working directory,
    then in the tiling; missing, the message names both absolute paths."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        WSITiles(cohort, labels="slides.csv")
    assert str(tmp_path / "slides.csv") in str(err.value) and str(cohort / "slides.csv") in str(err.value)
    labels = cohort / "slides.csv"
    labels.write_text("slide,label\n" + "".join(f"{s},{'tumor' if s in 'ace' else 'normal'}\n" for s in COHORT_SLIDES))
    try:
        ds = WSITiles(cohort, labels="slides.csv")
        assert ds.labels_path == cohort / "slides.csv" and ds.task == "binary"
        assert labels in ds.source_files()
    finally:
        labels.unlink()
