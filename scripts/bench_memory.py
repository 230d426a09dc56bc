"""Peak memory of reading a large 224 px MedMNIST-format file: medssl's mmap path vs np.load.

Writes ``synthpath_224.npz`` in the MedMNIST layout (``train_images`` (N, 224, 224, 3)
uint8, ``train_labels`` (N, 1); stored uncompressed, streamed so the writer never holds
the array) from real 96 px H&E tiles tiled to 224 px, plus its ``.json`` sidecar. Each
scenario then runs in a fresh Python process and reports its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the peaks of its two parts, anonymous
memory (``RssAnon``: the process's own, not reclaimable) and mapped file pages
(``RssFile``: page cache, shared and reclaimable), sampled every 5 ms in a thread:

* ``imports`` -- only ``import numpy, medssl.data`` (the floor of every scenario);
* ``medssl convert + read`` -- ``MedMNISTDataset(path=..., split="train")`` (auto mmap at
  224 px: the images are streamed once to a ``.npy`` cache) and ``--items`` random items;
* ``medssl cached, read all`` -- the same dataset again (cache reused), every item read;
* ``np.load whole array`` -- ``np.load(npz)["train_images"]``, the naive approach.

Everything written goes to a temporary directory that is deleted at the end.

    python scripts/bench_memory.py --images 16384 --items 2000
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, load_average, table  # noqa: E402

TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "histology" / "he_patches_96x96_unlabeled.npz"
SIZE = 224
SCENARIOS = ("imports", "medssl convert + read", "medssl cached, read all", "np.load whole array")


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_large_npz(path: Path, n: int, chunk: int = 512) -> Path:
    """Stream ``n`` 224 px RGB images (tiled real H&E) into a MedMNIST-layout npz at ``path``."""
    with np.load(TILES, allow_pickle=False) as z:
        tiles = z["images"]
    reps = -(-SIZE // tiles.shape[1])
    big = np.stack([np.tile(t, (reps, reps, 1))[:SIZE, :SIZE] for t in tiles])  # (T, 224, 224, 3)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("train_images.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "|u1", "fortran_order": False, "shape": (n, SIZE, SIZE, 3)})
            for start in range(0, n, chunk):
                idx = rng.integers(0, len(big), min(chunk, n - start))
                fh.write(np.ascontiguousarray(big[idx]).tobytes())
        zf.writestr("train_labels.npy", _npy_bytes(rng.integers(0, 9, (n, 1)).astype(np.uint8)))
    path.with_suffix(".json").write_text(json.dumps({"task": "multiclass",
                                                     "class_names": [f"class{i}" for i in range(9)]}))
    return path


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


class RssPeaks:
    """Samples ``RssAnon`` and ``RssFile`` every ``interval`` s in a thread (the kernel
    keeps only the peak of their sum, ``ru_maxrss``); peaks in KiB."""

    def __init__(self, interval: float = 0.005) -> None:
        self.anon_kib, self.file_kib = _status_kib("RssAnon"), _status_kib("RssFile")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)

    def sample(self) -> None:
        self.anon_kib = max(self.anon_kib, _status_kib("RssAnon"))
        self.file_kib = max(self.file_kib, _status_kib("RssFile"))

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def __enter__(self) -> "RssPeaks":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_scenario(name: str, npz: Path, cache: Path, items: int) -> Dict[str, float]:
    """Run one scenario in this process; returns RSS figures in MiB and seconds."""
    import medssl.data  # noqa: F401  (the same imports in every scenario)
    from medssl.data.medmnist import MedMNISTDataset

    with RssPeaks() as peaks:
        seconds = _scenario(name, npz, cache, items, MedMNISTDataset, peaks)
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "anon_mib": peaks.anon_kib / 1024, "file_mib": peaks.file_kib / 1024, "seconds": seconds}


def _scenario(name: str, npz: Path, cache: Path, items: int, dataset_cls: type, peaks: RssPeaks) -> float:
    start = time.perf_counter()
    if name.startswith("medssl"):
        ds = dataset_cls(path=npz, split="train", cache_dir=cache)
        order = (range(len(ds)) if name.endswith("read all")
                 else np.random.default_rng(0).permutation(len(ds))[:items])
        total = 0
        for i in order:
            image, _ = ds[int(i)]
            total += int(image[0, 0, 0])  # touch the pixels
        peaks.sample()  # while the mapping is still alive
    elif name == "np.load whole array":
        with np.load(npz) as z:
            images = z["train_images"]
        assert images.shape[1] == SIZE
        peaks.sample()
    return time.perf_counter() - start


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16384, help="images in the synthetic file (224 px RGB)")
    ap.add_argument("--items", type=int, default=2000, help="random items read in the 'convert + read' scenario")
    ap.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument("--smoke", action="store_true", help="tiny setting for tests (a few seconds)")
    ap.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)  # child-process mode
    ap.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario, args.npz, args.cache, args.items)))
        return 0
    if args.smoke:
        args.images, args.items = 64, 16
        args.scenarios = ["medssl convert + read", "np.load whole array"]
    print(header("Peak memory: 224 px MedMNIST-format file"))
    tmp = Path(tempfile.mkdtemp(prefix="medssl_bench_mem_"))
    try:
        t0 = time.perf_counter()
        npz = write_large_npz(tmp / "synthpath_224.npz", args.images)
        gib = npz.stat().st_size / 2**30
        print(f"file: {args.images} x {SIZE} x {SIZE} x 3 uint8, {gib:.2f} GiB on disk (written in "
              f"{time.perf_counter() - t0:.0f} s); {args.items} random items in 'convert + read'\n")
        rows = []
        for name in args.scenarios:
            cmd = [sys.executable, __file__, "--scenario", name, "--npz", str(npz), "--cache", str(tmp),
                   "--items", str(args.items)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rows.append([name, f"{res['peak_mib']:,.0f}", f"{res['anon_mib']:,.0f}", f"{res['file_mib']:,.0f}",
                         f"{res['seconds']:.1f}"])
            print(f"  {name}: peak {res['peak_mib']:,.0f} MiB (load {load_average()})", file=sys.stderr, flush=True)
        print(table(["scenario", "peak RSS = ru_maxrss (MiB)", "peak RssAnon (MiB)", "peak RssFile (MiB)",
                     "time (s)"], rows))
        print(f"\nload average at end: {load_average()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
