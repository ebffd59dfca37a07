"""Chaos scenarios for updates: concurrent edits of one task, and an older labpipe meeting a migrated store.

Each scenario runs real processes against a real store under `workdir` and returns its figures:
- concurrent_tags / concurrent_params: many processes edit one task at once; nothing may be lost.
- racing_transitions: processes race to start, then to complete or stop, the same tasks; each
  transition has exactly one winner and no winner's status is overwritten.
- version_skew: older-labpipe workers (one running a task, idle ones) and writers hold the store open
  while a newer labpipe migrates it; each stops at its next write, writing nothing more, and each
  worker exits with code 3 and one line.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import labpipe
from labpipe import IllegalTransition, Task, config
from labpipe.store import leases
from labpipe.store.db import get_database

# The folder holding this labpipe, for the processes a scenario starts with a fresh interpreter.
SOURCE = str(Path(labpipe.__file__).resolve().parents[1])
WAIT = 30.0


@contextlib.contextmanager
def _own_store(workdir: Path):
    """Point this process (and its children) at a store under `workdir`; restore afterwards."""
    old_env, old_explicit = os.environ.get(config.ENV_STORE), config._explicit
    root = workdir / "store"
    labpipe.set_store(root)
    try:
        yield root
    finally:
        config._explicit = old_explicit
        if old_env is None:
            os.environ.pop(config.ENV_STORE, None)
        else:
            os.environ[config.ENV_STORE] = old_env


def _in_processes(target, count: int, *args) -> list[int]:
    """Run target(i, barrier, *args) in `count` forked processes starting together; their exit codes."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(count)
    procs = [ctx.Process(target=target, args=(i, barrier, *args)) for i in range(count)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 300
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


# -- concurrent edits --------------------------------------------------------------------------


def _add_tags(i, barrier, task_id, n):
    task = Task.get_task(task_id=task_id)
    barrier.wait()
    for j in range(n):
        task.add_tags(f"p{i}-t{j}")


def concurrent_tags(workdir: Path, full: bool) -> dict:
    procs, each = (8, 500) if full else (4, 50)
    with _own_store(workdir):
        task = Task.create(task_name="tagged")
        t0 = time.perf_counter()
        codes = _in_processes(_add_tags, procs, task.id, each)
        seconds = time.perf_counter() - t0
        kept = set(task.get_tags())
    expected = procs * each
    return {"processes": procs, "expected": expected, "kept": len(kept & {f"p{i}-t{j}" for i in range(procs) for j in range(each)}),
            "lost": expected - len(kept), "failed_processes": sum(c != 0 for c in codes),
            "ms_per_tag": round(seconds * 1000 / expected, 3)}


def _set_params(i, barrier, task_id, n):
    task = Task.get_task(task_id=task_id)
    barrier.wait()
    for j in range(n):
        if j % 2:
            task.set_parameter(f"Args/p{i}_{j}", j)
        else:
            task.update_parameters({f"Args/p{i}_{j}": j, f"Shared/last_{i}": j})


def concurrent_params(workdir: Path, full: bool) -> dict:
    procs, each = (8, 500) if full else (4, 50)
    with _own_store(workdir):
        task = Task.create(task_name="tuned")
        codes = _in_processes(_set_params, procs, task.id, each)
        params = task.get_parameters(cast=True)
    wanted = {f"Args/p{i}_{j}": j for i in range(procs) for j in range(each)}
    wanted.update({f"Shared/last_{i}": each - 2 for i in range(procs)})
    return {"processes": procs, "expected": len(wanted), "lost": sum(params.get(k) != v for k, v in wanted.items()),
            "unexpected": len(set(params) - set(wanted)), "failed_processes": sum(c != 0 for c in codes)}


def _race(i, barrier, task_ids, wins):
    tasks = [Task.get_task(task_id=t) for t in task_ids]
    barrier.wait()
    for task in tasks:
        with contextlib.suppress(IllegalTransition):
            task.mark_started()
            wins.put(("started", task.id, i))
    for task in tasks:
        with contextlib.suppress(IllegalTransition):
            task.mark_completed() if i % 2 else task.mark_stopped()
            wins.put(("ended", task.id, i))


def racing_transitions(workdir: Path, full: bool) -> dict:
    procs, count = (8, 500) if full else (4, 40)
    with _own_store(workdir):
        ids = [Task.create(task_name=f"raced {k}").id for k in range(count)]
        wins = multiprocessing.get_context("fork").SimpleQueue()
        codes = _in_processes(_race, procs, ids, wins)
        seen = []
        while not wins.empty():
            seen.append(wins.get())
        started = [t for what, t, _ in seen if what == "started"]
        ended = [(t, by) for what, t, by in seen if what == "ended"]
        final = {t.id: t.status for t in Task.get_tasks(task_ids=ids)}
    overwritten = sum(final[t] != ("completed" if by % 2 else "stopped") for t, by in ended)
    return {"processes": procs, "tasks": count, "double_started": len(started) - len(set(started)),
            "never_started": count - len(set(started)), "double_ended": len(ended) - len({t for t, _ in ended}),
            "never_ended": count - len({t for t, _ in ended}), "overwritten": overwritten,
            "failed_processes": sum(c != 0 for c in codes)}


# -- version skew ------------------------------------------------------------------------------

# A newer labpipe: the same code one schema version up, with a harmless migration (a new column).
# It migrates the store, then enqueues a task that no older worker may claim.
NEWER_LABPIPE = """
import sys, time
from labpipe.store import schema
schema.SCHEMA_VERSION += 1
schema.MIGRATIONS[schema.SCHEMA_VERSION] = lambda db: db["tasks"].add_column("newer_field", str)
from labpipe import Task
from labpipe.store.db import get_database
db = get_database()
db.connection()
print(time.time(), db.query_one("SELECT count(*) FROM scalars")[0], flush=True)
Task.enqueue(Task.create(task_name="after the upgrade"), queue_name="skew")
print(Task.get_task(task_name="after the upgrade").id, flush=True)
"""

# An older labpipe's script writing metrics in a loop until the store refuses it.
OLD_WRITER = """
import sys
from labpipe import Task
from labpipe.errors import StoreTooNew
task = Task.create(task_name="old writer")
logger = task.get_logger()
logger.report_scalar("loss", "train", 0.0, 0)
print("ready", flush=True)
i = 1
try:
    while True:
        logger.report_scalar("loss", "train", float(i), i)
        i += 1
except StoreTooNew as exc:
    print(f"refused after {i} writes: {exc}", flush=True)
    sys.exit(2)
"""


def _sleep_task(seconds: float = 60.0) -> str:
    import time

    time.sleep(seconds)
    return "slept"


def version_skew(workdir: Path, full: bool) -> dict:
    workers, writers = (4, 4) if full else (2, 1)
    procs: list[subprocess.Popen] = []
    try:
        with _own_store(workdir) as root:
            env = {**os.environ, config.ENV_STORE: str(root),
                   "PYTHONPATH": os.pathsep.join(p for p in (SOURCE, os.environ.get("PYTHONPATH", "")) if p)}
            db = get_database()
            db.connection()  # the store, at this (older) labpipe's version
            busy = Task.create_function_task(_sleep_task, task_name="running during the upgrade")
            Task.enqueue(busy, queue_name="skew")
            # the last worker serves a queue nobody enqueues on: nothing wakes it, its heartbeat must stop it
            old_workers = [subprocess.Popen(
                [sys.executable, "-m", "labpipe.agent", "worker",
                 json.dumps({"store": str(root), "queues": ["skew" if k < workers - 1 else "elsewhere"], "kind": "pool",
                             "lease_seconds": 4.0, "grace": 1.0}), str(os.getpid())],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(workers)]
            procs += old_workers
            old_writers = [subprocess.Popen([sys.executable, "-c", OLD_WRITER], env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(writers)]
            procs += old_writers
            for w in old_writers:
                assert w.stdout.readline().strip() == "ready", w.stderr.read()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and not (
                    busy.get_status() == "in_progress" and len(leases.live_workers(db, 10)) == workers):
                time.sleep(0.05)
            assert busy.get_status() == "in_progress", f"no old worker took the task: {busy.get_status()}"
            time.sleep(0.5)  # the writers are writing, the workers serving

            newer = subprocess.run([sys.executable, "-c", NEWER_LABPIPE], env=env, capture_output=True, text=True, timeout=WAIT)
            assert newer.returncode == 0, newer.stderr
            stamp, count_at_upgrade, after_id = newer.stdout.split()
            upgraded_at = float(stamp)

            exits: list[float] = []
            for p in old_workers + old_writers:
                try:
                    p.wait(timeout=max(0.1, upgraded_at + WAIT - time.time()))
                except subprocess.TimeoutExpired:
                    continue
                if p in old_workers:
                    exits.append(time.time() - upgraded_at)
            worker_codes = [p.poll() for p in old_workers]
            worker_lines = [[ln for ln in p.stderr.read().splitlines() if ln.strip()] for p in old_workers if p.poll() is not None]
            writer_out = [p.stdout.read() for p in old_writers if p.poll() is not None]
            count_after = db.query_one("SELECT count(*) FROM scalars")[0]  # reads still work for an older labpipe
            after = db.query_one("SELECT status, worker FROM tasks WHERE id = ?", (after_id,))
            busy_row = db.query_one("SELECT status FROM tasks WHERE id = ?", (busy.id,))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for stream in (p.stdout, p.stderr):
                if stream:
                    stream.close()
    return {
        "workers": workers, "writers": writers,
        "workers_exited_3": sum(c == 3 for c in worker_codes),
        "worker_stderr_lines_max": max((len(lines) for lines in worker_lines), default=-1),
        "worker_message_clear": all(len(lines) == 1 and "upgraded to schema" in lines[0] and "upgrade labpipe" in lines[0]
                                    for lines in worker_lines) and len(worker_lines) == workers,
        "max_worker_exit_s": round(max(exits, default=float("inf")), 2),
        "writers_refused": sum("refused after" in out and "upgraded to schema" in out for out in writer_out),
        "writes_after_upgrade": count_after - int(count_at_upgrade),
        "claimed_after_upgrade": int(after["status"] != "queued"),
        "running_task_ended_by_old_worker": int(busy_row["status"] != "in_progress"),
    }


SCENARIOS = {
    "concurrent_tags": concurrent_tags,
    "concurrent_params": concurrent_params,
    "racing_transitions": racing_transitions,
    "version_skew": version_skew,
}

TARGETS = {
    "concurrent_tags": "0 tags lost (8 processes x 500 tags on one task)",
    "concurrent_params": "0 parameters lost (8 processes x 500 parameters on one task)",
    "racing_transitions": "each task started once and ended once, 0 winners overwritten",
    "version_skew": "every old worker exits with code 3 and one line within 3 s, every old writer refused, 0 writes after the upgrade",
}

CHECKS = {
    "concurrent_tags": lambda f: f["lost"] == 0 and f["kept"] == f["expected"] and f["failed_processes"] == 0,
    "concurrent_params": lambda f: f["lost"] == 0 and f["unexpected"] == 0 and f["failed_processes"] == 0,
    "racing_transitions": lambda f: f["failed_processes"] == 0 and all(
        f[k] == 0 for k in ("double_started", "never_started", "double_ended", "never_ended", "overwritten")),
    "version_skew": lambda f: f["workers_exited_3"] == f["workers"] and f["worker_message_clear"]
    and f["max_worker_exit_s"] <= 3.0 and f["writers_refused"] == f["writers"] and f["writes_after_upgrade"] == 0
    and f["claimed_after_upgrade"] == 0 and f["running_task_ended_by_old_worker"] == 0,
}
