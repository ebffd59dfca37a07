"""Benchmark decorator pipelines (issue 4's figures), each against baselines measured in the same run.

    python tools/bench_pipeline.py                    # every section
    python tools/bench_pipeline.py chain cached       # some sections
    python tools/bench_pipeline.py --steps 200 --repeat 3

Sections (every figure is the median of --repeat measurements, each in a fresh process with a
fresh LABPIPE_STORE, after ~500 MB of memory was allocated and touched in the measuring process:
on this machine memory that sat idle is slow to touch the first time):

  chain    --steps trivial components in a chain, `PipelineDecorator.run_locally()`, every step a
           task on the built-in pool; ms per step, timed around the pipeline call in a fresh
           process, so the pool's start counts. Target <= 5 ms.
  cached   the same chain (cache=True) run once, then again in a new process: all cache hits;
           ms per step. Target <= 0.25 ms.
  debug    `PipelineDecorator.debug_pipeline()`: us of overhead per step over the same plain calls.
           Target <= 50 us.
  numpy    a 100 MB array returned by one step and consumed by the next, run_locally; wall vs the
           raw baseline (the same two steps, pickle-to-file + one sqlite insert each, then load).
           Target <= 2x. Shown in a fresh process (pool start and the workers' numpy import count)
           and repeated in that process (pool up and warm).
  sleep    8 independent `time.sleep(0.5)` steps, `run_locally(workers=8)`: wall. Target <= 0.8 s.
           Fresh process (pool start counts) and repeated (pool up).
  heavy    (info) the chain, pool up, from an owner holding 1 GB of Python objects (a notebook with
           data loaded): workers started as fresh interpreters vs forked from that owner, and a lean owner.
  example  examples/pipeline_from_decorator.py in local mode, whole process wall (interpreter start
           and exit included): first run on a fresh store <= 3 s, second run (all cached) <= 1.5 s.
           Baselines: the same script with --debug (plain calls), and a bare interpreter.

Baselines for the chains: plain calls of the same function in one process, and the raw engine:
each step's result pickled to a file and recorded with one committed sqlite insert (WAL,
synchronous=NORMAL, as labpipe's store); its cached run looks each step's key up with one select
and loads the pickle.

The components live in a real module written to a temp folder (a step is a standalone script: its
source must be on disk); each measurement runs it with `python module.py CASE ...` and reads one
line of JSON. Prints figures only: no asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pipeline_from_decorator.py"
WARM_MB = 500

# The module every measuring process runs. Its components are the steps; its cases time one thing
# each, after warming memory, and print one line of JSON.
STEPS_MODULE = r'''
"""Components and timed cases for tools/bench_pipeline.py (written to a temp folder, run as a script)."""

import json
import os
import pickle
import sqlite3
import sys
import time

T_PROCESS = time.perf_counter()  # as early as this script can see; interpreter start is before it

from labpipe import PipelineDecorator  # noqa: E402


def warm_memory(mb):
    """Allocate and touch `mb` MB once (first-touch page faults must not land in a timed run)."""
    block = bytearray(mb << 20)
    block[::4096] = b"\x01" * (len(block) // 4096 + (1 if len(block) % 4096 else 0))
    del block


# -- the steps ---------------------------------------------------------------------------------


@PipelineDecorator.component(return_values=["y"])
def inc(x):
    return x + 1


@PipelineDecorator.component(return_values=["y"], cache=True)
def inc_cached(x):
    return x + 1


@PipelineDecorator.component(return_values=["arr"])
def make_array(mb, fill):
    import numpy as np

    return np.full(mb * (1 << 20) // 8, fill, dtype=np.float64)


@PipelineDecorator.component(return_values=["n"])
def consume(arr):
    import numpy as np  # noqa: F401

    return int(arr.shape[0]) + int(arr[-1])


@PipelineDecorator.component(return_values=["i"])
def nap(i, seconds):
    import time

    time.sleep(seconds)
    return i


def plain_inc(x):
    return x + 1


# -- the pipelines -----------------------------------------------------------------------------


@PipelineDecorator.pipeline(name="chain", project="bench", version="1")
def chain(n):
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


@PipelineDecorator.pipeline(name="chain-cached", project="bench", version="1")
def chain_cached(n):
    x = 0
    for _ in range(n):
        x = inc_cached(x)
    return x


@PipelineDecorator.pipeline(name="numpy", project="bench", version="1")
def pass_array(mb, fill):
    return consume(make_array(mb, fill))


@PipelineDecorator.pipeline(name="sleep", project="bench", version="1")
def naps(n, seconds):
    out = [nap(i, seconds) for i in range(n)]
    return sum(int(v) for v in out)


def plain_chain(n):
    x = 0
    for _ in range(n):
        x = plain_inc(x)
    return x


# -- the raw baseline: pickle to a file + one committed sqlite insert per step -----------------


def raw_db(root):
    os.makedirs(root, exist_ok=True)
    conn = sqlite3.connect(os.path.join(root, "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, step TEXT, path TEXT, created REAL)")
    return conn


def raw_put(conn, root, key, step, value, durable=False):
    path = os.path.join(root, key + ".pkl")
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        if durable:  # what labpipe does: the bytes reach the disk before the row naming them commits
            f.flush()
            os.fsync(f.fileno())
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO results (key, step, path, created) VALUES (?, ?, ?, ?)", (key, step, path, time.time()))
    conn.execute("COMMIT")


def raw_get(conn, key):
    row = conn.execute("SELECT path FROM results WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    with open(row[0], "rb") as f:
        return pickle.load(f)


def raw_chain(conn, root, n, cached):
    """Fresh: run and persist every step. Cached: each step is one key lookup + one pickle load."""
    import hashlib

    x = 0
    for i in range(n):
        key = hashlib.blake2b(b"plain_inc" + pickle.dumps(x), digest_size=16).hexdigest()
        if cached:
            x = raw_get(conn, key)
        else:
            x = plain_inc(x)
            raw_put(conn, root, key, f"inc_{i}", x)
    return x


def raw_numpy(conn, root, mb, fill, durable=False):
    """The two steps of `pass_array`, persisted the raw way: step one's array is written, then loaded by step two."""
    import numpy as np

    raw_put(conn, root, "arr", "make_array", np.full(mb * (1 << 20) // 8, fill, dtype=np.float64), durable)
    arr = raw_get(conn, "arr")
    n = int(arr.shape[0]) + int(arr[-1])
    raw_put(conn, root, "n", "consume", n)
    return n


# -- the cases ---------------------------------------------------------------------------------


def timed(fn, *args):
    os.sync()  # no run pays for writing back the previous run's dirty pages
    t0 = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - t0, value


def main():
    case, args = sys.argv[1], json.loads(sys.argv[2])
    t0 = time.perf_counter()
    warm_memory(args.get("warm_mb", 500))
    out = {"case": case, "warm": time.perf_counter() - t0}
    n = args.get("n", 200)
    if case == "chain":
        PipelineDecorator.run_locally()
        out["seconds"], out["value"] = timed(chain, n)
    elif case == "chain_heavy":
        # an owner holding `ballast_mb` of Python objects, as a notebook with data loaded does; its
        # pool starts as it would (forked or fresh by LABPIPE_WORKER_START, else by memory); pool up
        ballast = [float(i) for i in range(args["ballast_mb"] * (1 << 20) // 32)]  # ~32 B per float + slot
        PipelineDecorator.run_locally()
        chain(10)  # pool up, workers warm
        out["seconds"], out["value"] = timed(chain, n)
        out["ballast"] = len(ballast)
    elif case == "chain_cached":
        PipelineDecorator.run_locally()
        out["seconds"], out["value"] = timed(chain_cached, n)
    elif case == "debug":
        PipelineDecorator.debug_pipeline()
        reps = args.get("reps", 50)
        debug, plain = [], []
        for _ in range(reps):  # interleaved, so that both see the same machine
            debug.append(timed(chain, n)[0])
            plain.append(timed(plain_chain, n)[0])
        debug.sort(), plain.sort()
        out["seconds"], out["plain"] = debug[len(debug) // 2], plain[len(plain) // 2]
        out["value"] = chain(n)
    elif case == "plain":
        reps = args.get("reps", 50)
        out["seconds"] = sorted(timed(plain_chain, n)[0] for _ in range(reps))[reps // 2]
    elif case in ("raw_chain", "raw_chain_cached"):
        root = os.path.join(os.environ["LABPIPE_STORE"], "raw")
        conn = raw_db(root)
        if case == "raw_chain_cached":
            raw_chain(conn, root, n, cached=False)  # the first run, untimed
            # a new connection, as a new process would open
            conn.close()
            conn = raw_db(root)
        out["seconds"], out["value"] = timed(raw_chain, conn, root, n, case == "raw_chain_cached")
    elif case == "numpy":
        import numpy  # noqa: F401 - the raw baseline has it imported too

        PipelineDecorator.run_locally()
        # a new fill each run: equal bytes would be deduplicated by the store and never written again
        runs = [timed(pass_array, args["mb"], fill) for fill in range(1, args.get("runs", 4) + 1)]
        out["seconds"], out["value"] = runs[0]
        out["again"] = sorted(r[0] for r in runs[1:])[(len(runs) - 1) // 2]
    elif case == "raw_numpy":
        import numpy  # noqa: F401

        root = os.path.join(os.environ["LABPIPE_STORE"], "raw")
        conn = raw_db(root)
        durable = bool(args.get("durable"))
        runs = [timed(raw_numpy, conn, root, args["mb"], fill, durable) for fill in range(1, args.get("runs", 4) + 1)]
        out["seconds"], out["value"] = runs[0]
        out["again"] = sorted(r[0] for r in runs[1:])[(len(runs) - 1) // 2]
    elif case == "sleep":
        PipelineDecorator.run_locally(workers=args["workers"])
        runs = [timed(naps, args["steps"], args["sleep"]) for _ in range(args.get("runs", 3))]
        out["seconds"], out["value"] = runs[0]
        out["again"] = sorted(r[0] for r in runs[1:])[(len(runs) - 1) // 2]
    else:
        raise SystemExit(f"unknown case {case!r}")
    out["since_script_start"] = time.perf_counter() - T_PROCESS
    print("BENCH " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
'''


def warm_memory(mb: int = WARM_MB) -> None:
    """Allocate and touch `mb` MB once in this process (it measures whole-process walls)."""
    block = bytearray(mb << 20)
    block[::4096] = b"\x01" * (len(block) // 4096 + (1 if len(block) % 4096 else 0))
    del block


class Bench:
    """Runs the cases in fresh processes, each with a fresh store under one temp folder."""

    def __init__(self, root: Path, steps: int, repeat: int, profile: str | None = None):
        self.root = root
        self.steps = steps
        self.repeat = repeat
        self.profile = profile
        self.module = root / "bench_steps.py"
        self.module.write_text(STEPS_MODULE)
        self._count = 0

    def fresh_store(self) -> Path:
        self._count += 1
        return self.root / f"store-{self._count}"

    def case(self, case: str, store: Path | None = None, env: dict | None = None, **args) -> dict:
        """Run one case in a fresh process; its JSON plus the whole process wall ('wall', warm-up excluded).

        env: variables to set for that process (on top of this one's).
        """
        own = store is None
        store = store or self.fresh_store()
        extra = env or {}
        env = dict(os.environ, LABPIPE_STORE=str(store))
        env.pop("LABPIPE_REFRESH", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed labpipe has its byte code: do not compile each time
        env.update(extra)
        cmd = [sys.executable, str(self.module), case, json.dumps(dict(args, n=args.get("n", self.steps), warm_mb=WARM_MB))]
        if self.profile and case == self.profile:
            out = self.root / f"{case}-{self._count}.prof"
            cmd[1:1] = ["-m", "cProfile", "-o", str(out)]
            print(f"    (profile of {case} in {out})")
        os.sync()  # earlier measurements' dirty pages must not be flushed inside this one's fsyncs
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=self.root, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t0
        if own and not self.profile:
            drop(store)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"case {case} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        result = json.loads(lines[-1][6:])
        result["wall"] = wall - result["warm"]  # the whole process, less the memory warm-up
        return result

    def median(self, case: str, key: str = "seconds", **args) -> tuple[float, list[dict]]:
        runs = [self.case(case, **args) for _ in range(self.repeat)]
        return statistics.median(r[key] for r in runs), runs


def drop(store: Path) -> None:
    """Delete a finished measurement's store: its page cache is freed and reused by the next one.

    Kept, hundreds of MB of blobs would make each later measurement write into memory never touched
    before, which is slow on this machine (see the module docstring) and made the numpy figure bimodal.
    """
    shutil.rmtree(store, ignore_errors=True)


def mark(value: float, target: float) -> str:
    return "OK  " if value <= target else "MISS"


def line(label: str, value: str, target: str, ok: str, baseline: str) -> None:
    print(f"  {label:<52} {value:>10}   target {target:<9} {ok}  {baseline}")


# -- sections --------------------------------------------------------------------------------------


def bench_chain(b: Bench) -> None:
    n = b.steps
    ours, runs = b.median("chain")
    assert_value(runs, n)
    plain, _ = b.median("plain")
    raw, _ = b.median("raw_chain")
    per = ours / n * 1000
    wall = statistics.median(r["wall"] for r in runs) / n * 1000
    line(f"chain of {n}, run_locally, pool start incl. (ms/step)", f"{per:.2f} ms", "<= 5 ms", mark(per, 5.0),
         f"whole process {wall:.2f} ms/step; plain call {plain / n * 1e6:.2f} us/step; raw pickle+sqlite "
         f"{raw / n * 1000:.3f} ms/step; ratio to raw {ours / raw:.0f}x")


def bench_cached(b: Bench) -> None:
    n = b.steps
    samples, walls = [], []
    for _ in range(b.repeat):
        store = b.fresh_store()
        first = b.case("chain_cached", store=store)
        assert_value([first], n)
        again = b.case("chain_cached", store=store)
        assert_value([again], n)
        samples.append(again["seconds"])
        walls.append(again["wall"])
        drop(store)
    ours = statistics.median(samples)
    raw, _ = b.median("raw_chain_cached")
    per = ours / n * 1000
    line("same chain again, all cache hits (ms/step)", f"{per:.3f} ms", "<= 0.25 ms", mark(per, 0.25),
         f"whole process {statistics.median(walls) / n * 1000:.2f} ms/step; raw select+unpickle "
         f"{raw / n * 1000:.3f} ms/step; ratio to raw {ours / raw:.0f}x")


def bench_debug(b: Bench) -> None:
    n = b.steps
    runs = [b.case("debug", reps=200) for _ in range(b.repeat)]
    assert_value(runs, n)
    over = statistics.median((r["seconds"] - r["plain"]) / n * 1e6 for r in runs)
    plain = statistics.median(r["plain"] for r in runs) / n * 1e6
    debug = statistics.median(r["seconds"] for r in runs) / n * 1e6
    line("debug_pipeline overhead over plain calls (us/step)", f"{over:.2f} us", "<= 50 us", mark(over, 50.0),
         f"debug {debug:.2f} us/step; plain call {plain:.2f} us/step")


def bench_numpy(b: Bench, mb: int = 100) -> None:
    runs = [b.case("numpy", mb=mb) for _ in range(b.repeat)]
    raws = [b.case("raw_numpy", mb=mb) for _ in range(b.repeat)]
    durables = [b.case("raw_numpy", mb=mb, durable=True) for _ in range(b.repeat)]
    expected = mb * (1 << 20) // 8 + 1  # the first run's fill is 1
    assert_value(runs + raws + durables, expected)
    durable_warm = statistics.median(r["again"] for r in durables)
    cold, warm = (statistics.median(r[k] for r in runs) for k in ("seconds", "again"))
    raw_cold, raw_warm = (statistics.median(r[k] for r in raws) for k in ("seconds", "again"))
    line(f"{mb} MB array step -> step, fresh process (s)", f"{cold:.3f} s", "<= 2x raw", mark(cold / raw_cold, 2.0),
         f"raw pickle+sqlite, first in its process {raw_cold:.3f} s; ratio {cold / raw_cold:.1f}x "
         f"(pool start and the workers' numpy import count)")
    line(f"{mb} MB array step -> step, pool up (s)", f"{warm:.3f} s", "<= 2x raw", mark(warm / raw_warm, 2.0),
         f"raw pickle+sqlite {raw_warm:.3f} s; ratio {warm / raw_warm:.1f}x (runs 2-4 in the same process)")
    line(f"{mb} MB array step -> step, pool up, vs a durable raw baseline", f"{warm:.3f} s", "(info)", "",
         f"raw pickle+fsync+sqlite {durable_warm:.3f} s; ratio {warm / durable_warm:.1f}x (labpipe fsyncs a blob "
         "before the row naming it commits; the plain raw baseline does not)")


def bench_sleep(b: Bench, steps: int = 8, seconds: float = 0.5) -> None:
    runs = [b.case("sleep", steps=steps, sleep=seconds, workers=steps) for _ in range(b.repeat)]
    assert_value(runs, sum(range(steps)))
    cold, warm = (statistics.median(r[k] for r in runs) for k in ("seconds", "again"))
    line(f"{steps} x sleep({seconds}) on {steps} workers, fresh process (s)", f"{cold:.3f} s", "<= 0.8 s", mark(cold, 0.8),
         f"pool start counts; serial plain calls would take {steps * seconds:.1f} s, perfect parallelism {seconds:.1f} s")
    line(f"{steps} x sleep({seconds}) on {steps} workers, pool up (s)", f"{warm:.3f} s", "<= 0.8 s", mark(warm, 0.8),
         "runs 2-3 in the same process")


def bench_example(b: Bench) -> None:
    def run(store: Path, *extra: str) -> float:
        os.sync()
        warm_memory()
        env = dict(os.environ, LABPIPE_STORE=str(store))
        env.pop("LABPIPE_REFRESH", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(EXAMPLE), *extra], env=env, cwd=b.root, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or "pipeline completed" not in proc.stdout:
            raise RuntimeError(f"example failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return wall

    run(b.fresh_store(), "--debug")  # untimed: writes the iris pickle, warms the disk cache
    first, second, debug, bare = [], [], [], []
    for _ in range(b.repeat):
        store = b.fresh_store()
        first.append(run(store))
        second.append(run(store))
        drop(store)
        store = b.fresh_store()
        debug.append(run(store, "--debug"))
        drop(store)
        warm_memory()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    f, s, d, p = (statistics.median(x) for x in (first, second, debug, bare))
    line("seed example, run_locally, first run (s)", f"{f:.2f} s", "<= 3 s", mark(f, 3.0),
         f"same script --debug (plain calls) {d:.2f} s; bare interpreter {p:.3f} s")
    line("seed example, run_locally, second run, cached (s)", f"{s:.2f} s", "<= 1.5 s", mark(s, 1.5),
         f"ratio to --debug {s / d:.2f}x")


def assert_value(runs: list[dict], expected: int) -> None:
    """Not an assert: a wrong result makes the figure meaningless, so say so loudly."""
    for r in runs:
        if r.get("value") != expected:
            print(f"  WARNING: case {r['case']} returned {r.get('value')!r}, expected {expected}")


def bench_heavy(b: Bench, ballast_mb: int = 1000) -> None:
    n = b.steps
    lean, runs = b.median("chain_heavy", ballast_mb=0)
    assert_value(runs, n)
    heavy, runs = b.median("chain_heavy", ballast_mb=ballast_mb)
    assert_value(runs, n)
    forked, runs = b.median("chain_heavy", ballast_mb=ballast_mb, env={"LABPIPE_WORKER_START": "fork"})
    assert_value(runs, n)
    line(f"chain of {n}, owner holding {ballast_mb} MB, pool up (ms/step)", f"{heavy / n * 1000:.2f} ms", "(info)", "",
         f"lean owner {lean / n * 1000:.2f} ms/step; same owner with workers forked from it "
         f"{forked / n * 1000:.2f} ms/step (every task's fork then copies the owner's page tables)")


SECTIONS = {
    "chain": bench_chain, "cached": bench_cached, "debug": bench_debug,
    "numpy": bench_numpy, "sleep": bench_sleep, "example": bench_example, "heavy": bench_heavy,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--steps", type=int, default=200, help="chain length (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per figure (default 3)")
    parser.add_argument("--profile", metavar="CASE", help="run that case's process under cProfile (main thread only); "
                        "cases: chain chain_cached debug numpy sleep")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (stores, module, profiles)")
    args = parser.parse_args()
    chosen = args.sections or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    root = Path(tempfile.mkdtemp(prefix="labpipe-bench-pipeline-", dir=os.environ.get("BENCH_DIR")))
    warm_memory()
    print(f"labpipe pipeline figures (issue 4), medians of {args.repeat}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores")
    try:
        bench = Bench(root, args.steps, args.repeat, args.profile)
        for name in chosen:
            t0 = time.perf_counter()
            SECTIONS[name](bench)
            print(f"    ({name}: {time.perf_counter() - t0:.0f} s to measure)", flush=True)
    finally:
        if args.keep or args.profile:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
