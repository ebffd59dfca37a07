"""The hot path's figures (issue 13), labpipe against the raw baseline, measured in one run.

    python tools/bench_hotpath.py [--steps 200] [--repeat 3]

The workloads, each in a fresh process with a fresh store (medians of --repeat):

  A  a chain of --steps trivial components, `run_locally()`, every result persisted: ms per step,
     timed around the pipeline call (the pool's start counts). Goal <= 2 ms.
  B  the same chain (cache=True) run again in a new process, all cache hits: ms per step. Goal <= 0.10.
  C  8 x sleep(0.5) on 8 workers (pool start counts): s. Goal <= 0.56.
  whole process A / B: the same runs, interpreter start to exit. Goals <= 0.8 s / <= 0.2 s.
  import: `python -c "import labpipe"`. Goal <= 0.07 s (a bare interpreter is the floor).

The raw baseline does the same work with nothing else: each step's result pickled to a file and
recorded with one committed sqlite insert (WAL, synchronous=NORMAL); its cached run is one select and
one unpickle per step; its C is 8 forked processes sleeping, their results then recorded the same way.
Every figure prints with its ratio to raw and its goal. Prints figures only: no asserts.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import Bench, assert_value, drop, warm_memory  # noqa: E402


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def raw_sleep(root: Path, workers: int, seconds: float) -> float:
    """C the raw way: a fork pool of `workers` sleeping, each result pickled and recorded in sqlite."""
    import multiprocessing

    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(_nap, [seconds] * workers)
    conn = sqlite3.connect(root / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, path TEXT)")
    for i, value in enumerate(results):
        path = root / f"nap{i}.pkl"
        path.write_bytes(pickle.dumps(value))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (f"nap{i}", str(path)))
        conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t0


def import_time(code: str, repeat: int) -> float:
    samples = []
    for _ in range(max(repeat, 5)):
        t0 = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: byte code kept
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def row(label: str, ours: float, raw: float, goal: float, unit: str, digits: int) -> None:
    ok = "OK  " if ours <= goal else "MISS"
    ratio = f"{ours / raw:5.1f}x raw" if raw > 0 else "   -    "
    print(f"  {label:<44} {ours:>9.{digits}f} {unit:<5} raw {raw:>8.{digits}f}  {ratio}   goal <= {goal:g} {unit}  {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warm_memory()
    n = args.steps
    with tempfile.TemporaryDirectory(prefix="labpipe-hotpath-") as tmp:
        b = Bench(Path(tmp), n, args.repeat)
        a_ours, a_runs = b.median("chain")
        assert_value(a_runs, n)
        a_raw, a_raw_runs = b.median("raw_chain")
        cached, cached_walls = [], []
        for _ in range(args.repeat):
            store = b.fresh_store()
            assert_value([b.case("chain_cached", store=store)], n)
            again = b.case("chain_cached", store=store)
            assert_value([again], n)
            cached.append(again["seconds"])
            cached_walls.append(again["wall"])
            drop(store)
        b_raw, b_raw_runs = b.median("raw_chain_cached")
        c_ours, _ = b.median("sleep", workers=8, steps=8, sleep=0.5, runs=2)  # the first run (pool start incl.) is the figure
        c_raw = statistics.median(raw_sleep(Path(tmp) / f"raw-c{i}", 8, 0.5) for i in range(args.repeat))
        bare = import_time("pass", args.repeat)
        ours_import = import_time("import labpipe", args.repeat)

    print(f"hot path, {n}-step chain, medians of {args.repeat} fresh processes ({os.cpu_count()} cores)")
    row("A: chain, fresh store (ms/step)", a_ours / n * 1000, a_raw / n * 1000, 2.0, "ms", 2)
    row("B: chain again, all cache hits (ms/step)", statistics.median(cached) / n * 1000, b_raw / n * 1000, 0.10, "ms", 3)
    row("C: 8 x sleep(0.5) on 8 workers (s)", c_ours, c_raw, 0.56, "s", 3)
    row("whole process, A (s)", statistics.median(r["wall"] for r in a_runs),
        statistics.median(r["wall"] for r in a_raw_runs), 0.8, "s", 2)
    row("whole process, B (s)", statistics.median(cached_walls), statistics.median(r["wall"] for r in b_raw_runs), 0.2, "s", 2)
    row("import labpipe (s; raw = bare interpreter)", ours_import, bare, 0.07, "s", 3)


if __name__ == "__main__":
    main()
