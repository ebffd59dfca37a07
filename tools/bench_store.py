"""Benchmark the store (issue 2's figures), each against a baseline measured in the same run.

    python tools/bench_store.py [--tasks 100000]

1. create a task + 5 parameters + one small artifact + complete; baseline: the same rows written
   with raw sqlite3 + pickle into the same schema (same tables, indexes, pragmas and commits).
2. Task.get_tasks(project=, status=) over N tasks; Task.get_task by a 7-character id prefix (baseline: by whole id).
3. a 100 MB numpy artifact, upload + get; baseline: np.save + np.load of the same array to the same disk.
4. `python -c "import labpipe"`; baseline: `python -c pass`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_create(root: Path, n: int = 2000) -> tuple[float, float]:
    import labpipe
    from labpipe import Task

    labpipe.set_store(root / "labpipe-store")
    Task.create(task_name="warmup").mark_completed()
    ours = []
    for i in range(n):
        t0 = time.perf_counter()
        t = Task.create(project_name="bench", task_name=f"t{i}")
        t.set_parameters({"Args/a": 1, "Args/b": 0.5, "Args/c": "x", "Args/d": True, "Args/e": [1, 2]})
        t.upload_artifact("result", {"value": i, "rows": [1, 2, 3]})
        t.mark_completed()
        ours.append(time.perf_counter() - t0)

    # The baseline writes the same rows into the same tables (labpipe's schema, indexes and pragmas)
    # with hand-written sqlite3 calls and pickle: the ratio is labpipe's own overhead.
    from labpipe.store import schema

    conn = sqlite3.connect(root / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    for statement in schema._statements(schema.SCHEMA):
        conn.execute(statement)
    raw = []
    for i in range(n):
        t0 = time.perf_counter()
        tid = uuid.uuid4().hex
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO tasks (id, name, project, created, last_update) VALUES (?, ?, ?, ?, ?)", (tid, f"t{i}", "bench", now, now))
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO params (task, section, name, value, type) VALUES (?, 'Args', ?, ?, ?)",
                         [(tid, k, repr(v), type(v).__name__) for k, v in {"a": 1, "b": 0.5, "c": "x", "d": True, "e": [1, 2]}.items()])
        conn.execute("COMMIT")
        data = pickle.dumps({"value": i, "rows": [1, 2, 3]})
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR IGNORE INTO inline_blobs (hash, data, created) VALUES (?, ?, ?)", (tid, data, now))
        conn.execute("INSERT INTO artifacts (task, name, hash, size, kind, created) VALUES (?, 'result', ?, ?, 'pickle', ?)",
                     (tid, tid, len(data), now))
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE tasks SET status = 'completed', completed = ? WHERE id = ?", (time.time(), tid))
        conn.execute("COMMIT")
        raw.append(time.perf_counter() - t0)
    return _median_ms(ours), _median_ms(raw)


def bench_get_tasks(root: Path, n: int) -> tuple[float, int]:
    import labpipe
    from labpipe import Task
    from labpipe.store import tasks
    from labpipe.store.db import get_database

    labpipe.set_store(root / "many")
    db = get_database()
    statuses = ["created", "queued", "completed", "failed", "stopped"]
    rng = random.Random(0)
    now = time.time()
    rows = [(uuid.uuid4().hex, f"t{i}", f"project-{rng.randrange(20)}", "training", rng.choice(statuses), now + i, now + i)
            for i in range(n)]
    db.write(lambda c: c.executemany(
        "INSERT INTO tasks (id, name, project, type, status, created, last_update) VALUES (?, ?, ?, ?, ?, ?, ?)", rows))
    tasks.find_tasks(db, project="project-3", status=["completed"])  # warm the page cache
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        found = Task.get_tasks(project_name="project-3", task_filter={"status": ["completed"]})
        samples.append(time.perf_counter() - t0)
    # an id prefix (7 characters, as git shows) against the exact id, both through Task.get_task
    picks = [rows[rng.randrange(n)][0] for _ in range(50)]
    prefix, exact = [], []
    for tid in picks:
        t0 = time.perf_counter()
        Task.get_task(task_id=tid[:7])
        prefix.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        Task.get_task(task_id=tid)
        exact.append(time.perf_counter() - t0)
    return _median_ms(samples), len(found), _median_ms(prefix), _median_ms(exact)


def bench_numpy(root: Path, mb: int = 100) -> tuple[float, float]:
    import numpy as np

    import labpipe
    from labpipe import Task

    labpipe.set_store(root / "np-store")
    arr = np.random.default_rng(0).random(mb * 1024 * 1024 // 8)
    t = Task.create(task_name="np")
    ours, base = [], []
    for i in range(4):  # the first round warms memory and the page cache for both sides
        arr[0] = i  # new content each round, so every upload really writes
        os.sync()  # neither side pays for the other's dirty pages being written back
        t0 = time.perf_counter()
        t.upload_artifact("arr", arr)
        got = t.artifacts["arr"].get()
        t1 = time.perf_counter()
        assert got[0] == i
        del got
        path = root / "np-base.npy"
        os.sync()
        tb = time.perf_counter()
        np.save(path, arr)
        back = np.load(path)
        t2 = time.perf_counter()
        del back
        if i:
            ours.append(t1 - t0)
            base.append(t2 - tb)
    return statistics.median(ours), statistics.median(base)


def bench_import() -> tuple[float, float]:
    def run(code: str) -> float:
        samples = []
        for _ in range(7):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            samples.append(time.perf_counter() - t0)
        return _median_ms(samples)

    return run("import labpipe"), run("pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        ours, raw = bench_create(root)
        print(f"create+5 params+small artifact+complete: median {ours:.3f} ms (target <= 1 ms); "
              f"raw sqlite3+pickle {raw:.3f} ms; ratio {ours / raw:.2f}x (target <= 3x)")
        ms, found, prefix_ms, exact_ms = bench_get_tasks(root, args.tasks)
        print(f"Task.get_tasks(project, status) over {args.tasks:,d} tasks: median {ms:.1f} ms for {found} matches (target <= 50 ms)")
        print(f"Task.get_task(7-character id prefix) over {args.tasks:,d} tasks: median {prefix_ms:.3f} ms (target <= 5 ms); "
              f"by whole id {exact_ms:.3f} ms; ratio {prefix_ms / exact_ms:.2f}x")
        ours_s, base_s = bench_numpy(root)
        print(f"100 MB numpy artifact upload+get: {ours_s:.3f} s; np.save+np.load {base_s:.3f} s; "
              f"ratio {ours_s / base_s:.2f}x (target <= 1.5x)")
    imp, bare = bench_import()
    print(f"python -c 'import labpipe': {imp:.0f} ms; bare interpreter {bare:.0f} ms; labpipe's own share {imp - bare:.0f} ms (target <= 150 ms)")


if __name__ == "__main__":
    main()
