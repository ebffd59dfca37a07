"""Benchmark the agent layer: latency, throughput, parallel speed-up, warm imports, crash safety.

    python tools/bench_agents.py            # all sections
    python tools/bench_agents.py latency throughput

Each section prints its figure, the issue's target, and a ratio against a baseline measured in the
same run (plain function calls in this process, or a fresh interpreter per task where that is what
the alternative would cost). Every section uses a fresh store in a temp folder and its own pool.
The functions below are the tasks (a worker runs their source as standalone scripts).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import labpipe  # noqa: E402
from labpipe import Task  # noqa: E402
from labpipe.agent import Pool  # noqa: E402
from labpipe.store import leases as store_leases  # noqa: E402
from labpipe.store import tasks as store_tasks  # noqa: E402
from labpipe.store.db import get_database  # noqa: E402
from labpipe.waiting import wait_for_tasks  # noqa: E402

# -- the tasks ---------------------------------------------------------------------------------


def inc(x):
    return x + 1


def burn(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def fit_small(seed):
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=50)})
    df["y"] = 3 * df["x"] + rng.normal(size=50) * 0.1
    model = LinearRegression().fit(df[["x"]], df["y"])
    return float(model.coef_[0])


def logged(log_file, tag, seconds):
    import os
    import time

    time.sleep(seconds)
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{tag}\n".encode())
    os.close(fd)
    return tag


# -- helpers -----------------------------------------------------------------------------------


def fresh_store(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"labpipe-bench-{name}-")) / "store"
    labpipe.set_store(path)
    return path


def report(label: str, value: str, target: str, ok: bool, baseline: str) -> None:
    print(f"  {label:<44} {value:>16}   target {target:<14} {'OK ' if ok else 'MISS'}   {baseline}")


def wait_idle(pool: Pool) -> None:
    db = get_database()
    deadline = time.monotonic() + 10
    while len(store_leases.live_workers(db, 10)) < sum(pool.queues.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)


# -- sections ----------------------------------------------------------------------------------


def bench_latency(n: int = 200) -> None:
    print("enqueue -> started latency, warm 2-worker pool, idle between tasks")
    fresh_store("latency")
    t0 = time.perf_counter()
    for i in range(n):
        inc(i)
    call = (time.perf_counter() - t0) / n
    with Pool({"default": 2}) as pool:
        wait_idle(pool)
        lat = []
        for i in range(n):
            task = Task.create_function_task(inc, x=i)
            time.sleep(0.002 if i % 2 else 0.05)  # let workers go idle (some deeply asleep)
            t_enq = time.time()
            Task.enqueue(task)
            task.wait_for_status(timeout=30, check_interval_sec=0.002)
            lat.append(task.data.started - t_enq)
    med = statistics.median(lat)
    p90 = statistics.quantiles(lat, n=10)[-1]
    report("median latency", f"{med * 1e3:.2f} ms", "<= 5 ms", med <= 0.005, f"p90 {p90 * 1e3:.2f} ms; plain call {call * 1e6:.2f} us")


def bench_throughput(n: int = 1000) -> None:
    print(f"{n} trivial function tasks through a 2-worker pool, end to end")
    fresh_store("throughput")
    t0 = time.perf_counter()
    for i in range(n):
        inc(i)
    base = time.perf_counter() - t0
    with Pool({"default": 2}) as pool:
        wait_idle(pool)
        t0 = time.perf_counter()
        tasks = []
        for i in range(n):
            task = Task.create_function_task(inc, x=i)
            Task.enqueue(task)
            tasks.append(task)
        t_enq = time.perf_counter() - t0
        wait_for_tasks(tasks, timeout=120, poll=0.02)
        wall = time.perf_counter() - t0
    bad = [t for t in tasks if t.status != "completed"]
    sample = tasks[n // 2].artifacts["return_object"].get()
    rate = n / wall
    report("tasks/s (create+enqueue+run+store+complete)", f"{rate:.0f} /s", ">= 500 /s", rate >= 500 and not bad and sample == n // 2 + 1,
           f"wall {wall:.2f} s (create+enqueue {t_enq:.2f} s); plain calls {n / base:,.0f} /s")


def bench_cpu(n_tasks: int = 4) -> None:
    print(f"{n_tasks} CPU-bound ~1 s tasks on 2 workers vs one after another")
    fresh_store("cpu")
    work = 1
    t0 = time.perf_counter()
    burn(200_000)
    per = time.perf_counter() - t0
    work = int(200_000 / per)  # iterations for ~1 s
    t0 = time.perf_counter()
    for _ in range(n_tasks):
        burn(work)
    sequential = time.perf_counter() - t0
    with Pool({"default": 2}) as pool:
        wait_idle(pool)
        t0 = time.perf_counter()
        tasks = [Task.enqueue(Task.create_function_task(burn, n=work)) for _ in range(n_tasks)]
        wait_for_tasks(tasks, timeout=60)
        wall = time.perf_counter() - t0
    ratio = wall / sequential
    report("wall / sequential", f"{ratio:.3f}", "<= 0.55", ratio <= 0.55, f"wall {wall:.2f} s; sequential plain calls {sequential:.2f} s")


def bench_warm(n: int = 20) -> None:
    print(f"{n} tasks importing pandas + scikit-learn on 2 workers (this process has not imported them)")
    assert "pandas" not in sys.modules, "the bench process must not import pandas before forking the pool"
    fresh_store("warm")
    with Pool({"default": 2}) as pool:
        wait_idle(pool)
        t0 = time.perf_counter()
        tasks = [Task.enqueue(Task.create_function_task(fit_small, seed=i)) for i in range(n)]
        wait_for_tasks(tasks, timeout=120)
        wall = time.perf_counter() - t0
    coefs = [t.artifacts["return_object"].get() for t in tasks]
    assert all(abs(c - 3) < 0.2 for c in coefs), coefs
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, pandas, sklearn.linear_model"], check=True)
    fresh = time.perf_counter() - t0
    # Plain calls in a fresh interpreter (including its one import of pandas and sklearn): doing them
    # here would import pandas into this process, and every later section's workers would inherit it.
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from bench_agents import fit_small; [fit_small(i) for i in range({n})]"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    plain = time.perf_counter() - t0
    report("wall", f"{wall:.2f} s", "<= 2 s", wall <= 2.0,
           f"process per task would be ~{fresh * n / 2:.1f} s ({fresh:.2f} s each, 2 at a time); plain calls in one fresh process {plain:.2f} s")


def bench_kill(n: int = 200) -> None:
    print(f"kill -9 of a worker amid {n} queued tasks")
    root = fresh_store("kill")
    log = root.parent / "runs.log"
    with Pool({"default": 2}) as pool:
        wait_idle(pool)
        tasks = [Task.enqueue(Task.create_function_task(logged, log_file=str(log), tag=f"t{i}", seconds=0.01)) for i in range(n)]
        db = get_database()
        while len(store_tasks.find_tasks(db, status=["completed"])) < n // 4:
            time.sleep(0.005)
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        wait_for_tasks(tasks, status=("completed", "failed"), raise_on_status=(), timeout=120)
    statuses = [t.get_status() for t in tasks]
    runs: dict[str, int] = {}
    for line in log.read_text().split():
        runs[line] = runs.get(line, 0) + 1
    completed = [t for t, s in zip(tasks, statuses, strict=True) if s == "completed"]
    failed = [t for t, s in zip(tasks, statuses, strict=True) if s == "failed"]
    twice = [t.name for t in tasks if runs.get(t.get_parameters(cast=True)["kwargs/tag"], 0) > 1]
    unrun = [t for t in completed if runs.get(t.get_parameters(cast=True)["kwargs/tag"], 0) != 1]
    integrity = db.query_one("PRAGMA integrity_check")[0]
    ok = len(completed) + len(failed) == n and not twice and not unrun and integrity == "ok"
    report("completed + failed of 200, none twice", f"{len(completed)} + {len(failed)}", "200, 0 twice", ok,
           f"ran twice: {len(twice)}; integrity_check: {integrity}; failed: {[t.get_status_message() for t in failed]}")


SECTIONS = {"latency": bench_latency, "throughput": bench_throughput, "cpu": bench_cpu, "warm": bench_warm, "kill": bench_kill}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SECTIONS)
    # warm first: it needs this process free of pandas, which the other sections never import.
    for name in sorted(chosen, key=lambda s: s != "warm"):
        SECTIONS[name]()
