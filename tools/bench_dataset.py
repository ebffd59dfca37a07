"""Benchmark Dataset (issue 10's figures), each against a baseline measured in the same run.

    python tools/bench_dataset.py [--files 10000] [--mb 1024]

1. add_files of N small files (1-4 KB) + finalize; baseline: `cp -r` of the same folder on the same disk.
2. add_files of one large file + finalize; baseline: `cp` of that file on the same disk.
3. get_local_copy() of a finalized dataset: first call (copies) and second call (the cache).

Targets: 1 and 2 at >= 0.5x the speed of cp (time ratio <= 2x); the cached get_local_copy <= 50 ms.
Medians of 3 runs, each into a fresh store; the source files are in the page cache for both sides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _small_files(root: Path, n: int) -> Path:
    src = root / "small"
    for i in range(n):
        folder = src / f"d{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.txt").write_bytes(os.urandom(1024 + (i % 4) * 1024))
    return src


def _big_file(root: Path, mb: int) -> Path:
    path = root / "big" / "big.bin"
    path.parent.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(mb):
            fh.write(block)
    return path


def _cp(src: Path, dest: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    return time.perf_counter() - t0


def _add(store: Path, src: Path) -> tuple[float, object]:
    import labpipe
    from labpipe import Dataset

    labpipe.set_store(store)
    t0 = time.perf_counter()
    ds = Dataset.create(dataset_name=src.name, dataset_project="bench")
    ds.add_files(src)
    ds.finalize()
    return time.perf_counter() - t0, ds


def _compare(root: Path, src: Path, label: str, runs: int = 3) -> object:
    ours, base, ds = [], [], None
    for i in range(runs):
        base.append(_cp(src, root / f"cp-{label}-{i}"))
        seconds, ds = _add(root / f"store-{label}-{i}", src)
        ours.append(seconds)
    o, b = statistics.median(ours), statistics.median(base)
    print(f"{label}: add_files+finalize median {o:.3f} s; cp -r {b:.3f} s; time ratio {o / b:.2f}x "
          f"(speed {b / o:.2f}x of cp; target >= 0.5x)", flush=True)
    return ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        small = _small_files(root, args.files)
        ds = _compare(root, small, f"{args.files:,d} small files")
        t0 = time.perf_counter()
        ds.get_local_copy()
        first = time.perf_counter() - t0
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            ds.get_local_copy()
            samples.append(time.perf_counter() - t0)
        print(f"get_local_copy of {args.files:,d} files: first {first:.3f} s; cached median {statistics.median(samples) * 1000:.2f} ms "
              "(target <= 50 ms)", flush=True)
        big = _big_file(root, args.mb)
        _compare(root, big.parent, f"one {args.mb} MB file")
    sys.exit(0)


if __name__ == "__main__":
    main()
