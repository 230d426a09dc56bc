"""Slide-level splits (medssl/wsi/splits.py)."""

from __future__ import annotations

import json

import pytest

from medssl.errors import DataError
from medssl.wsi.splits import read_splits, split_slides, write_splits


def test_split_is_a_seeded_partition_of_slides():
    ids = [f"s{i:02d}" for i in range(20)]
    a = split_slides(ids, 0.1, 0.2, seed=0)
    assert [len(a[k]) for k in ("train", "val", "test")] == [14, 2, 4]
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert a == split_slides(ids, 0.1, 0.2, seed=0) and a != split_slides(ids, 0.1, 0.2, seed=1)


def test_a_nonzero_fraction_gets_at_least_one_slide():
    s = split_slides(["a", "b", "c"], 0.05, 0.05)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (1, 1, 1)


@pytest.mark.parametrize("val, test, msg", [(1.0, 0, "--val must be a fraction"), (0.5, 0.5, "cannot give")])
def test_impossible_fractions(val, test, msg):
    with pytest.raises(DataError, match=msg):
        split_slides(["a", "b", "c", "d"], val, test, where="DIR")


@pytest.mark.shared_data
def test_write_and_read_back(cohort, tmp_path):
    doc = write_splits(cohort, val=0.2, test=0.2, seed=0)
    assert doc["by"] == "slide" and read_splits(cohort) == doc["splits"]
    assert sum(len(v) for v in doc["splits"].values()) == 5
    assert json.loads((cohort / "splits.json").read_text())["seed"] == 0


def test_missing_or_damaged_splits_file(tmp_path):
    with pytest.raises(DataError, match=r"no splits.json; make slide-level splits first: medssl data split"):
        read_splits(tmp_path)
    (tmp_path / "splits.json").write_text("{}")
    with pytest.raises(DataError, match="splits.json: not a medssl splits file"):
        read_splits(tmp_path)
