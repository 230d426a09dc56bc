"""``medssl data tile`` / ``medssl data split`` through the CLI (medssl/wsi/commands.py):
exit codes, one-line errors naming the file, and nothing lost on a refusal."""

from __future__ import annotations

import json

import pytest

from medssl.cli import main

pytestmark = pytest.mark.shared_data


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("medssl: error: ") for line in err)
    return err[-1]


def test_tile_and_split_through_the_cli(svs, pyramid, tmp_path, capsys):
    out = tmp_path / "tiles"
    assert main(["data", "tile", str(svs), str(pyramid), "--out", str(out), "--max-tiles-per-slide", "4",
                 "--shard-size", "3"]) == 0
    cap = capsys.readouterr()
    assert f"{out}: 2 of 2 slide(s) tiled, 8 tiles" in cap.out
    assert "cmu_small_region_HE: 4 tiles kept" in cap.err and "pyramid: 4 tiles kept" in cap.err
    params = json.loads((out / "manifest.json").read_text())["params"]
    assert params["mpp"] == 0.5 and params["level"] is None and params["tile"] == 96
    assert main(["data", "split", str(out), "--by", "slide", "--val", "0", "--test", "0.5", "--seed", "3"]) == 0
    assert "train 1, val 0, test 1 slide(s)" in capsys.readouterr().out
    doc = json.loads((out / "splits.json").read_text())
    assert sorted(doc["splits"]["train"] + doc["splits"]["test"]) == ["cmu_small_region_HE", "pyramid"]


def test_failed_slide_exits_2_and_names_it(svs, bad_slides, tmp_path, capsys):
    out = tmp_path / "tiles"
    rc = main(["data", "tile", str(bad_slides["text"]), str(svs), "--out", str(out), "--max-tiles-per-slide", "2",
               "--quiet"])
    assert rc == 2
    cap = capsys.readouterr()
    assert "1 of 2 slide(s) tiled" in cap.out
    lines = cap.err.strip().splitlines()
    assert lines[0].startswith(f"medssl: error: slide notes failed: {bad_slides['text']}: not a readable whole-slide image")
    assert "1 slide(s) failed (listed in" in lines[1] and "--resume" in lines[1] and len(lines) == 2


@pytest.mark.parametrize("extra, expect", [
    (["--mpp", "0.1"], "no level at 0.1 um/px"),
    (["--level", "4"], "no pyramid level 4: the slide has levels 0..2"),
    (["--tile", "2000", "--mpp", "1"], "a 2000 px tile at 1 um/px covers 8000 level-0 px but the slide is 1024 x 1024"),
])
def test_impossible_requests_name_the_slide(pyramid, tmp_path, capsys, extra, expect):
    assert main(["data", "tile", str(pyramid), "--out", str(tmp_path / "o"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert f"slide pyramid failed: {pyramid}: " in err and expect in err


def test_slide_without_mpp_through_the_cli(pyramid_no_mpp, tmp_path, capsys):
    assert main(["data", "tile", str(pyramid_no_mpp), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"slide nompp failed: {pyramid_no_mpp}: the slide has no microns-per-pixel in its metadata" in err
    assert "--level N" in err and "--slide-mpp M" in err
    assert main(["data", "tile", str(pyramid_no_mpp), "--out", str(tmp_path / "p"), "--quiet", "--level", "2",
                 "--max-tiles-per-slide", "1"]) == 0


def test_refusals_through_the_cli(svs, tmp_path, capsys):
    out = tmp_path / "tiles"
    base = ["data", "tile", str(svs), "--out", str(out), "--max-tiles-per-slide", "2", "--quiet"]
    assert main(base) == 0
    capsys.readouterr()
    before = (out / "manifest.json").read_bytes()
    assert main(base) == 2
    assert "already holds a tiling (manifest.json); pass --resume" in _err_line(capsys)
    assert main(["data", "tile", str(svs), str(svs), "--out", str(tmp_path / "x")]) == 2
    assert f"{svs}: slide given twice on the command line" in _err_line(capsys)
    assert main([*base, "--resume", "--overlap", "8"]) == 2
    assert "different settings (overlap: 0 there vs 8 now)" in _err_line(capsys)
    assert main([*base, "--resume"]) == 0  # everything done already: nothing to do
    assert (out / "manifest.json").read_bytes() != b"" and json.loads(before)["totals"]["tiles"] == 2


def test_split_of_a_folder_that_is_not_a_tiling(tmp_path, capsys):
    assert main(["data", "split", str(tmp_path)]) == 2
    assert f"{tmp_path}: no manifest.json; this is not a `medssl data tile` output directory" in _err_line(capsys)


def test_tile_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["data", "tile", "--help"])
    out = capsys.readouterr().out
    for opt in ("--mpp", "--level", "--overlap", "--tissue", "--min-tissue", "--max-tiles-per-slide", "--workers",
                "--resume", "--slide-mpp", "--shard-size"):
        assert opt in out


def test_no_progress_silences_the_per_slide_lines(pyramid, tmp_path, capsys):
    """--no-progress, as on every long medssl command, is --quiet here."""
    assert main(["data", "tile", str(pyramid), "--out", str(tmp_path / "o"), "--max-tiles-per-slide", "2",
                 "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "1 of 1 slide(s) tiled" in cap.out and cap.err == ""
