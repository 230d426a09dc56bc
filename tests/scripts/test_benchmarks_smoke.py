"""The peer benchmarks in scripts/ run end to end in their tiny ``--smoke`` setting and
print their Markdown tables; their pure helpers compute what they claim."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import List

import numpy as np
import pytest
import torch

from conftest import REPO, shared_file

SCRIPTS = REPO / "scripts"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(text: str, first_header: str) -> List[List[str]]:
    """Body rows of the Markdown table whose first header cell is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def number(cell: str) -> float:
    return float(re.sub(r"[,x]", "", cell))


def test_header_names_machine_and_load() -> None:
    common = load_script("bench_common")
    text = common.header("t")
    assert "machine:" in text and "-core CPU" in text and "load average at start:" in text
    assert re.search(r"date: \d{4}-\d{2}-\d{2}", text)


def test_interleaved_runs_round_robin() -> None:
    common = load_script("bench_common")
    calls: List[str] = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=2, warmup=1)
    assert calls == ["a", "b"] * 3
    assert [len(v) for v in times.values()] == [2, 2]


def test_pcam_reading_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    shared_file("histology/he_patches_96x96_unlabeled.npz")
    pytest.importorskip("torchvision")
    assert load_script("bench_pcam_reading").main(["--smoke"]) == 0
    rows = table_rows(capsys.readouterr().out, "layout (x file)")
    assert [r[1:3] for r in rows] == [["random", "0"], ["sequential", "0"]]
    assert all(r[0].startswith("gzip (") for r in rows)
    for r in rows:
        ours, theirs, ratio = number(r[3]), number(r[4]), number(r[5])
        assert ours > 0 and theirs > 0
        assert ratio == pytest.approx(ours / theirs, rel=0.05, abs=0.06)


def test_pcam_images_are_real_tiles_in_d4_orbits() -> None:
    path = shared_file("histology/he_patches_96x96_unlabeled.npz")
    images = load_script("bench_pcam_reading").make_images(20, seed=3)
    with np.load(path) as z:
        tiles = z["images"]
    assert images.shape == (20, 96, 96, 3) and images.dtype == np.uint8
    orbit = {np.rot90(t, k)[:, ::f].tobytes() for t in tiles[:400] for k in range(4) for f in (1, -1)}
    assert all(img.tobytes() in orbit for img in images)


@pytest.mark.parametrize("layout", ["gzip", "raw"])
def test_pcam_layouts_give_same_pixels_to_both_readers(tmp_path: Path, layout: str) -> None:
    shared_file("histology/he_patches_96x96_unlabeled.npz")
    torchvision_datasets = pytest.importorskip("torchvision.datasets")
    from medssl.data.pcam import PCAM

    script = load_script("bench_pcam_reading")
    root = script.build_split(tmp_path, 12, layout)
    expected = script.make_images(12)
    ours, theirs = PCAM(root), torchvision_datasets.PCAM(str(tmp_path), split="train")
    assert len(ours) == len(theirs) == 12
    np.testing.assert_array_equal(ours[7][0], expected[7])
    np.testing.assert_array_equal(np.asarray(theirs[7][0]), expected[7])
    assert ours[7][1] == theirs[7][1]


def test_train_step_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lightly")
    assert load_script("bench_train_step").main(["--smoke"]) == 0
    rows = table_rows(capsys.readouterr().out, "implementation")
    assert [r[0] for r in rows] == ["medssl", "lightly", "medssl, channels_last (pretrain's default)"]
    assert rows[1][3] == "1.00x"
    assert all(number(r[1]) > 0 for r in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_train_step_on_cuda_without_a_gpu_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_script("bench_train_step").main(["--smoke", "--device", "cuda"])
    assert "torch sees no CUDA device here" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_step_smoke_on_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lightly")
    assert load_script("bench_train_step").main(["--smoke", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert torch.cuda.get_device_name() in out and len(table_rows(out, "implementation")) == 3


def test_scaling_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_script("bench_scaling").main(["--smoke"]) == 0
    out = capsys.readouterr().out
    q_rows = table_rows(out, "|Q|")
    assert [r[0] for r in q_rows] == ["256", "512", "1,024"]
    assert all(number(c) > 0 for r in q_rows for c in r[1:])
    assert [r[0] for r in table_rows(out, "B")] == ["8", "16", "32"]


def test_fit_line_recovers_exact_line() -> None:
    a, b, r2 = load_script("bench_scaling").fit_line([1, 2, 3, 4], [3.0, 5.0, 7.0, 9.0])
    assert (a, b, r2) == pytest.approx((1.0, 2.0, 1.0))


def test_memory_file_is_read_by_medmnist_loader(tmp_path: Path) -> None:
    shared_file("histology/he_patches_96x96_unlabeled.npz")
    from medssl.data.medmnist import MedMNISTDataset

    npz = load_script("bench_memory").write_large_npz(tmp_path / "synthpath_224.npz", 5, chunk=2)
    ds = MedMNISTDataset(path=npz, split="train", cache_dir=tmp_path)
    image, label = ds[4]
    assert len(ds) == 5 and image.shape == (224, 224, 3) and image.dtype == np.uint8
    assert 0 <= label < 9 and image.std() > 0
    assert ds._mmap_file is not None  # 224 px: the memory-mapped path was taken


def test_memory_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    shared_file("histology/he_patches_96x96_unlabeled.npz")
    assert load_script("bench_memory").main(["--smoke"]) == 0
    rows = table_rows(capsys.readouterr().out, "scenario")
    assert [r[0] for r in rows] == ["medssl convert + read", "np.load whole array"]
    assert all(number(r[1]) > 0 for r in rows)


def test_epoch_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_script("bench_epoch").main(["--smoke", "--settings", "demo"]) == 0
    rows = table_rows(capsys.readouterr().out, "setting")
    assert [r[0] for r in rows] == ["demo"]
    cpu, batch, ratio = number(rows[0][2]), number(rows[0][3]), number(rows[0][4])
    assert cpu > 0 and batch > 0
    # the ratio comes from the unrounded speeds, the table rounds them to whole img/s: that
    # matters when a loaded machine makes them small (printed 20 and 11 img/s, ratio 0.58)
    lo, hi = (batch - 0.5) / (cpu + 0.5), (batch + 0.5) / max(cpu - 0.5, 1e-9)
    assert lo - 0.01 <= ratio <= hi + 0.01, (cpu, batch, ratio)


def test_fingerprint_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    load_script("bench_fingerprint").main(["--sizes", "3", "--reps", "1"])
    rows = table_rows(capsys.readouterr().out, "file (MB)")
    assert [r[0] for r in rows] == ["3"] and number(rows[0][1]) > 0 and number(rows[0][3]) > 0


def test_bench_threads_settings_cover_default_manual_and_the_old_spin_wait() -> None:
    bench = load_script("bench_threads")
    s = bench.settings(4)
    assert s["default"] == {} and s["1 thread"] == {"OMP_NUM_THREADS": "1"}
    assert s["4 threads"] == {"OMP_NUM_THREADS": "4"}
    assert s["spin (before)"]["GOMP_SPINCOUNT"] == "300000"
    env = bench._env({"OMP_NUM_THREADS": "1"})
    assert env["OMP_NUM_THREADS"] == "1" and "OMP_WAIT_POLICY" not in env


def test_bench_threads_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_script("bench_threads")
    bench.main(["--smoke"])
    rows = table_rows(capsys.readouterr().out, "setting")
    assert [r[0] for r in rows] == ["default", "1 thread"]
    assert all(number(r[1]) > 0 for r in rows)
    assert min(number(r[3]) for r in rows) == 1.0  # the best setting is the reference


def test_bench_embed_smoke_matches_the_plain_loop(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_script("bench_embed")
    bench.main(["--smoke", "--threads", "1"])
    out = capsys.readouterr().out
    assert "largest feature difference between the two: 0.0e+00" in out
    rows = table_rows(out, "contender")
    assert [r[0] for r in rows] == ["medssl.embed", "plain no_grad loop"]
    assert all(number(r[1]) > 0 for r in rows)


def test_bench_cpu_path_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    load_script("bench_cpu_path").main(["--smoke", "--threads", "1", "--bf16"])
    rows = table_rows(capsys.readouterr().out, "contender")
    assert [r[0] for r in rows] == ["fp32", "fp32 channels_last", "bf16 autocast"]
    assert number(rows[0][3]) == 1.0 and all(number(r[1]) > 0 for r in rows)
