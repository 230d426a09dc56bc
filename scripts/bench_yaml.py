"""YAML reading speed: ``yaml.safe_load`` (pure Python) vs medssl's ``load_yaml`` (libyaml
safe loader plus the duplicate-key / alias walk), and what ``load_yaml`` does with a file
over its 1 MiB limit.

Each file is a config-shaped mapping with one long list of path strings (the shape of the
5 MB config that took 13.7 s to parse), at ``--sizes`` MB. Both readers run round-robin
``--reps`` times per size; the table gives medians.

    python scripts/bench_yaml.py --sizes 0.1 0.5 1.0 5.0 --reps 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import List

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, interleaved, median, table  # noqa: E402

from medssl.config import MAX_YAML_BYTES, load_yaml  # noqa: E402
from medssl.errors import ConfigError  # noqa: E402

ITEM = "- data/tiles/slide_0001/tile_000000_000000.png\n"


def write_config(path: Path, megabytes: float) -> Path:
    n = int(megabytes * 1e6 / len(ITEM))
    path.write_text("seed: 0\ndata: {name: folder, root: data}\nfiles:\n" + ITEM * n)
    return path


def medssl_read(path: Path) -> str:
    try:
        load_yaml(path)
        return "parsed"
    except ConfigError:
        return "refused (over 1 MiB)"


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.1, 0.5, 1.0, 5.0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    print(header("YAML reading: yaml.safe_load vs medssl load_yaml"))
    print(f"libyaml available: {yaml.__with_libyaml__}; limit {MAX_YAML_BYTES} bytes\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.sizes:
            path = write_config(Path(tmp) / f"c_{mb}.yaml", mb)

            def python_loader(p: Path = path) -> None:
                with p.open() as fh:
                    yaml.safe_load(fh)

            times = interleaved({"safe_load": python_loader, "medssl": lambda p=path: medssl_read(p)},
                                args.reps, warmup=0)
            a, b = median(times["safe_load"]), median(times["medssl"])
            result = medssl_read(path)
            rows.append([f"{path.stat().st_size / 1e6:.2f}", f"{a:.3f}", f"{b:.4f}", result,
                         f"{a / b:.1f}x" if result == "parsed" else "n/a"])
    print(table(["file (MB)", "yaml.safe_load (s)", "medssl load_yaml (s)", "medssl result", "ratio"], rows))


if __name__ == "__main__":
    main()
