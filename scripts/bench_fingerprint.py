"""What the content-keyed caches cost: the full sha256 of a data file (the transfer
feature-cache key) and the size + head/tail sha256 (MedMNIST memory-map copies, run
provenance), on files of ``--sizes`` MB already in the page cache (the state a file is in
right after a run read it; a cold read adds the disk's own speed).

Each hash runs round-robin ``--reps`` times per size; the table gives medians and the
full hash's throughput.

    python scripts/bench_fingerprint.py --sizes 64 256 1024 --reps 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, median, table  # noqa: E402

from medssl.provenance import head_tail_sha256, sha256_file  # noqa: E402

BLOCK = 16 << 20


def write_file(path: Path, megabytes: float) -> Path:
    """``megabytes`` MB of random bytes (incompressible, as image data), written in 16 MiB blocks."""
    left = int(megabytes * 1e6)
    with path.open("wb") as fh:
        while left > 0:
            n = min(BLOCK, left)
            fh.write(os.urandom(n))
            left -= n
    return path


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    print(header("Hashing data files: full sha256 vs size + head/tail sha256"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.sizes:
            path = write_file(Path(tmp) / f"data_{mb}.bin", mb)
            sha256_file(path)  # into the page cache
            times = interleaved({"full": lambda p=path: sha256_file(p),
                                 "head_tail": lambda p=path: head_tail_sha256(p)}, args.reps, warmup=0)
            full, ht = median(times["full"]), median(times["head_tail"])
            size = path.stat().st_size / 1e6
            rows.append([f"{size:.0f}", f"{full:.3f}", f"{size / full:.0f}", f"{ht * 1e3:.2f}"])
            path.unlink()
    print(table(["file (MB)", "full sha256 (s)", "full sha256 (MB/s)", "size + head/tail sha256 (ms)"], rows))


if __name__ == "__main__":
    main()
