"""Store verbs for who runs a task and what happens when they stop or die. All lease SQL lives here.

`tasks.py` holds what a task is (its row, parameters, queues); this module holds its runs. The model
(ARCHITECTURE.md, "Tasks, statuses, leases"): a worker claims a queued task in one transaction,
becoming its owner (`worker`) with a new `attempt` and a `lease_until` it must keep renewing; the claim
returns a `Lease(task_id, owner, attempt)` (store/records.py). Every verb that extends or ends the run
(renew_lease, finish, requeue, finish_run) takes that Lease and is fenced by it: a stale owner's call
changes nothing and says so (None or False), so it can never overwrite a newer attempt. When an owner dies its lease lapses and `reap_expired`, which any
process may call, re-queues the task (while `retries_left`) or fails it.

A lease is never judged by comparing wall-clock times written by different processes (a clock step
of 30 s would fail healthy runs; an owner whose clock ran ahead would hide its death). Instead:
- an owner of this machine is checked directly (store/owners.py): a claim records the owner's process
  identity, and once that process is gone its lease is lapsed at once, whatever the clocks say;
- each renewal bumps the task's heartbeat counter `lease_beat` and records the owner's
  `time.monotonic()` (`lease_mono`): an observer sharing that clock (same boot and time namespace)
  compares it with its own; any other watches the counter on its own monotonic clock (`LeaseWatch`).
  Silent for `lease_seconds` means lapsed.
`lease_until` is still written (owner's clock) for people reading the row; nothing decides by it.

A task run in a user's own process (`local:<host>:<pid>`) holds no lease: that process's death is
what ends it. Stopping a pipeline stops everything below it (`stop_below`), and a run's own ending
never overwrites a stop (`end_run`). The `workers` table (register, heartbeat, live_workers) records
who is serving which queues.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..clock import wall
from ..config import LEASE_SECONDS, POISON_RUNS
from ..errors import TaskNotFound
from ..status import COMPLETED, FAILED, IN_PROGRESS, QUEUED, STOPPED, check_status
from . import blobs, owners
from .db import Database
from .records import Lease, TaskRow
from .tasks import next_seq


def claim_next(db: Database, queues: Sequence[str], owner: str, lease_seconds: float) -> Lease | None:
    """Lease the next task from the first non-empty queue (priority, then FIFO), or None.

    One BEGIN IMMEDIATE transaction: marks it in_progress, owned by `owner`, attempt + 1, with a
    lease that the owner must renew (`renew_lease`); nobody else can claim it meanwhile. The lease
    returned is what every later verb of this run is fenced by; its `task` is the claimed row.
    """
    proc = owners.process_identity()  # the claimer is the owner: see store/owners.py

    def claim(c: sqlite3.Connection) -> Lease | None:
        now = wall()
        for queue in queues:
            row = c.execute(
                "UPDATE tasks SET status = 'in_progress', worker = ?, attempt = attempt + 1, lease_until = ?, "
                "lease_seconds = ?, lease_beat = lease_beat + 1, lease_mono = ?, owner_proc = ?, "
                "started = ?, last_update = ?, status_message = '' "
                "WHERE id = (SELECT id FROM tasks WHERE status = 'queued' AND queue = ? "
                "ORDER BY priority DESC, enqueue_seq LIMIT 1) RETURNING *",
                (owner, now + lease_seconds, lease_seconds, time.monotonic(), proc, now, now, queue),
            ).fetchone()
            if row is not None:
                return Lease(row["id"], owner, row["attempt"], task=TaskRow.from_row(row))
        return None

    return db.write(claim)


def renew_lease(db: Database, lease: Lease, lease_seconds: float) -> str | None:
    """Extend a lease; returns the task's status, or None when the lease is no longer the task's run
    (fenced out: nothing is written).

    A status other than in_progress (e.g. 'stopped' set by a user) tells the owner to end the run.
    Only the owner renews: the heartbeat counter goes up by one, which is what observers watch.
    """
    proc = owners.process_identity()

    def renew(c: sqlite3.Connection) -> str | None:
        now = wall()
        status = _held(c, lease)
        if status == IN_PROGRESS:
            c.execute(
                "UPDATE tasks SET lease_until = ?, lease_seconds = ?, lease_beat = lease_beat + 1, lease_mono = ?, "
                "owner_proc = ?, last_update = ? WHERE id = ?",
                (now + lease_seconds, lease_seconds, time.monotonic(), proc, now, lease.task_id),
            )
        return status

    return db.write(renew)


def held_status(db: Database, lease: Lease) -> str | None:
    """The task's status while `lease` is still its run (whatever that status is), None once it is not
    (re-run by another owner or attempt, or the task is gone): an owner's cheap "is it still mine?" read."""
    row = db.query_one("SELECT status, worker, attempt FROM tasks WHERE id = ?", (lease.task_id,))
    return None if row is None or (row[1], row[2]) != (lease.owner, lease.attempt) else row[0]


def current_lease(db: Database, task_id: str) -> Lease | None:
    """The lease of the task's run now, when it is in progress under an owner; None otherwise."""
    row = db.query_one("SELECT worker, attempt FROM tasks WHERE id = ? AND status = 'in_progress' AND worker IS NOT NULL",
                       (task_id,))
    return None if row is None else Lease(task_id, row[0], row[1])


def _held(c: sqlite3.Connection, lease: Lease) -> str | None:
    """Inside a transaction: `held_status`."""
    row = c.execute("SELECT status, worker, attempt FROM tasks WHERE id = ?", (lease.task_id,)).fetchone()
    return None if row is None or (row[1], row[2]) != (lease.owner, lease.attempt) else row[0]


_FENCE = "WHERE id = ? AND worker = ? AND attempt = ? AND status = 'in_progress'"


def finish(db: Database, lease: Lease, status: str, message: str = "") -> bool:
    """Record the end of a run with nothing else to record (a `Task.init` script's task); False when
    fenced out (the lease is no longer the task's in-progress run), and then nothing changed."""
    check_status(status)
    now = wall()
    n = db.execute(
        f"UPDATE tasks SET status = ?, status_message = ?, completed = ?, lease_until = NULL, last_update = ? {_FENCE}",
        (status, message, now, now, *_fence(lease)),
    )
    return n == 1


def requeue(db: Database, lease: Lease, message: str) -> bool:
    """Put the task of this run back on its queue (its owner shuts down and the grace period ran out);
    False when fenced out, and then nothing changed."""
    def put(c: sqlite3.Connection) -> bool:
        n = c.execute(
            "UPDATE tasks SET status = 'queued', worker = NULL, lease_until = NULL, status_message = ?, enqueue_seq = ?, "
            f"last_update = ? {_FENCE}",
            (message, next_seq(c, "enqueue"), wall(), *_fence(lease)),
        ).rowcount
        return n == 1

    return db.write(put)


def finish_run(
    db: Database,
    lease: Lease,
    status: str,
    message: str = "",
    *,
    artifacts: Sequence[tuple[str, blobs.BlobRef, str, str, str]] = (),
    runtime: dict | None = None,
    retry: bool = False,
) -> str | None:
    """Record the end of a worker's run in one fenced transaction; returns the status it now has.

    artifacts: (name, blob ref, kind, filename, preview) results of the run, recorded with it (the
    blobs are already durable); runtime: keys merged into the runtime JSON (e.g. what it imported).
    retry: a failed run goes back on its queue while `retries_left` lasts (returns 'queued').
    Returns None, recording nothing, when fenced out: the run is no longer this lease's (stopped,
    reaped, re-run), and a stale worker can never overwrite a newer attempt.
    """
    check_status(status)
    now = wall()

    def record(c: sqlite3.Connection) -> str | None:
        row = c.execute(f"SELECT retries_left FROM tasks {_FENCE}", _fence(lease)).fetchone()
        if row is None:
            return None
        _record_outputs(c, lease.task_id, artifacts, runtime, now)
        if status == FAILED and retry and row["retries_left"] > 0:
            c.execute(
                "UPDATE tasks SET status = 'queued', retries_left = retries_left - 1, worker = NULL, lease_until = NULL, "
                "enqueue_seq = ?, status_message = ?, last_update = ? WHERE id = ?",
                (next_seq(c, "enqueue"), f"retrying after: {message}", now, lease.task_id),
            )
            return QUEUED
        c.execute(
            "UPDATE tasks SET status = ?, status_message = ?, completed = ?, lease_until = NULL, last_update = ? WHERE id = ?",
            (status, message, now, now, lease.task_id),
        )
        return status

    return db.write(record)


def _record_outputs(c: sqlite3.Connection, task_id: str, artifacts: Sequence[tuple[str, blobs.BlobRef, str, str, str]],
                    runtime: dict | None, now: float) -> None:
    """Inside finish_run's transaction: a run's artifact rows (and inline bytes) and runtime keys."""
    for name, ref, kind, filename, preview in artifacts:
        blobs.insert_inline(c, ref)
        # Same statement as outputs.put_artifact; here it commits atomically with the status.
        c.execute(
            "INSERT OR REPLACE INTO artifacts (task, name, hash, size, kind, filename, preview, metadata, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, '{}', ?)",
            (task_id, name, ref.hash, ref.size, kind, filename, preview, now),
        )
    if runtime:
        c.execute("UPDATE tasks SET runtime = json_patch(runtime, ?) WHERE id = ?", (json.dumps(runtime), task_id))


def _fence(lease: Lease) -> tuple[str, str, int]:
    return lease.task_id, lease.owner, lease.attempt


def has_queued(db: Database, queues: Sequence[str]) -> bool:
    """Whether any of these queues holds a task: an idle worker's read-only look before it claims."""
    return db.query_one(
        f"SELECT 1 FROM tasks WHERE status = 'queued' AND queue IN ({', '.join('?' * len(queues))}) LIMIT 1", tuple(queues)
    ) is not None


def recent_imports(db: Database, queues: Sequence[str], limit: int = 50) -> list[str]:
    """Modules the last `limit` completed tasks of these queues imported (declared in their source or
    recorded by the worker that ran them), newest first: what a starting daemon imports ahead."""
    rows = db.query(
        f"SELECT json_extract(script, '$.imports'), json_extract(runtime, '$.imports') FROM tasks "
        f"WHERE status = 'completed' AND queue IN ({', '.join('?' * len(queues))}) ORDER BY completed DESC LIMIT ?",
        (*queues, limit),
    )
    names: dict[str, None] = {}
    for declared, recorded in rows:
        for text in (declared, recorded):
            if text:
                names.update(dict.fromkeys(name for name in json.loads(text) if isinstance(name, str)))
    return list(names)


class LeaseWatch:
    """What one process has seen of the running leases, timed on its own monotonic clock.

    Per task: the (owner, attempt, heartbeat) last seen and when this process first saw it. A lease
    whose heartbeat has not moved for its `lease_seconds`, as this observer measured it, has lapsed.
    No wall time written by another process enters the decision, so clock steps (NTP, a resumed VM, a
    clock set ahead on the owner) change nothing. An owner of this machine is judged at once: dead
    when its process is gone (store/owners.py), silent when the `time.monotonic()` of its last
    renewal (`lease_mono`; the same clock for every process of one boot and time namespace) is a
    lease old. Only an owner elsewhere (another host or container) needs an observer that watched it
    for a whole lease.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple, float]] = {}
        self._lock = threading.Lock()

    def lapsed(self, rows: Sequence[sqlite3.Row], now: float) -> list[tuple[sqlite3.Row, str]]:
        """The rows (in_progress tasks with an owner) whose run is over, each with why."""
        out = []
        with self._lock:
            live = set()
            for row in rows:
                live.add(row["id"])
                key = (row["worker"], row["attempt"], row["lease_beat"])
                seen = self._seen.get(row["id"])
                if seen is None or seen[0] != key:
                    seen = self._seen[row["id"]] = (key, now)
                state = owners.owner_state(row["worker"], row["owner_proc"])
                if state == "dead":
                    pid = owners.owner_pid(row["worker"])
                    out.append((row, f"its process (pid {pid}) is gone"))
                    continue
                if row["lease_until"] is None:  # no lease (a local controller): only its death ends it
                    continue
                window = row["lease_seconds"] if row["lease_seconds"] is not None else LEASE_SECONDS
                silent = now - seen[1]
                if row["lease_mono"] is not None and owners.same_clock(row["owner_proc"]):
                    silent = max(silent, now - row["lease_mono"])  # its renewal time, on our clock
                if silent >= window:
                    out.append((row, f"no heartbeat for {silent:.1f} s (lease {window:g} s)"))
            for task_id in set(self._seen) - live:
                del self._seen[task_id]
        return out


_watches: dict[str, tuple[int, LeaseWatch]] = {}
_watches_lock = threading.Lock()


def _watch(db: Database) -> LeaseWatch:
    """This process's LeaseWatch for `db` (a forked child starts its own: the lock may be inherited held)."""
    key = str(db.path)
    with _watches_lock:
        entry = _watches.get(key)
        if entry is None or entry[0] != os.getpid():
            entry = _watches[key] = (os.getpid(), LeaseWatch())
        return entry[1]


def _dead_local_pid(owner: str | None, identity: str | None = None) -> int | None:
    """The pid of `owner` if it names a process of this host that is gone (see store/owners.py).
    Without a recorded identity, a pid reused since then counts as alive (the safe side)."""
    if owners.owner_state(owner, identity) != "dead":
        return None
    return owners.owner_pid(owner)


def stop_below(db: Database, task_id: str, message: str) -> list[str]:
    """Stop every queued or running task below `task_id` (a pipeline's steps, nested runs and their
    steps), in one transaction; returns their ids. Their workers end their processes on their next look."""
    now = wall()

    def stop(c: sqlite3.Connection) -> list[str]:
        rows = c.execute(
            "WITH RECURSIVE below(id) AS (SELECT id FROM tasks WHERE parent = ? "
            "UNION SELECT t.id FROM tasks t JOIN below b ON t.parent = b.id) "
            "UPDATE tasks SET status = 'stopped', status_message = ?, completed = ?, last_update = ?, lease_until = NULL "
            "WHERE id IN below AND status IN ('queued', 'in_progress') RETURNING id",
            (task_id, message, now, now),
        ).fetchall()
        return [r[0] for r in rows]

    return db.write(stop)


def ended_controller(db: Database, parent_id: str | None) -> str | None:
    """Why a step of pipeline `parent_id` must not start: its controller task ended (stopped, failed,
    completed) or the process running it here died; None when it may (or it is not a pipeline's step)."""
    if not parent_id:
        return None
    row = db.query_one("SELECT type, status, worker, owner_proc, lease_until FROM tasks WHERE id = ?", (parent_id,))
    if row is None or row["type"] != "controller":
        return None
    if row["status"] in (STOPPED, FAILED, COMPLETED):
        return f"its pipeline {parent_id} has ended ({row['status']})"
    if row["status"] == IN_PROGRESS and row["lease_until"] is None:
        pid = _dead_local_pid(row["worker"], row["owner_proc"])
        if pid is not None:
            return f"its pipeline {parent_id} is no longer running (its process, pid {pid}, died)"
    return None


def end_run(db: Database, task_id: str, status: str, message: str) -> str:
    """Record how a run (a pipeline's controller) ended, unless it was stopped meanwhile: a stop from
    outside (`labpipe stop`, Ctrl-C in the process that waits for it) is never overwritten by the
    run's own ending. Returns the status the task has now."""
    check_status(status)
    now = wall()
    row = db.write(lambda c: c.execute(
        "UPDATE tasks SET status = ?, status_message = ?, completed = ?, last_update = ?, lease_until = NULL "
        "WHERE id = ? AND (status != 'stopped' OR ? = 'stopped') RETURNING status",
        (status, message, now, now, task_id, status),
    ).fetchone())
    if row is not None:
        return row[0]
    current = db.query_one("SELECT status FROM tasks WHERE id = ?", (task_id,))
    if current is None:
        raise TaskNotFound(f"no task with id {task_id!r} in {db.root}")
    return current[0]


def expire_worker(db: Database, worker: str) -> int:
    """End the leases of a worker known to be dead (its pool saw it exit), so the next reap handles its
    task now: a lease of 0 s has lapsed for every observer at first sight."""
    return db.execute(
        "UPDATE tasks SET lease_until = 0, lease_seconds = 0 WHERE worker = ? AND status = 'in_progress'", (worker,)
    )


_RUNNING = (
    "SELECT id, name, worker, attempt, lease_until, lease_seconds, lease_beat, lease_mono, owner_proc, retries_left, lost_runs "
    "FROM tasks WHERE status = 'in_progress' AND worker IS NOT NULL"
)


def reap_expired(db: Database) -> list[tuple[str, str]]:
    """Deal with in_progress tasks whose run is over (their owner died or went silent): re-queue or fail them.

    Returns (task_id, new_status) pairs. Safe to call from any process at any time, and cheap when
    nothing lapsed (one read). Called often (every pool's and daemon's monitor twice a second, idle
    workers, waiters, the listing commands), since each caller judges silence on its own clock
    (LeaseWatch). A task whose worker died POISON_RUNS times is failed even with retries left: it is
    most likely what kills its workers.
    """
    gone = [r["id"] for r in db.query("SELECT id, proc FROM workers") if owners.owner_state(r["id"], r["proc"]) == "dead"]
    if gone:  # rows of workers killed with their agent: nobody else would remove them
        db.write(lambda c: c.executemany("DELETE FROM workers WHERE id = ?", [(w,) for w in gone]))
    lapsed = _watch(db).lapsed(db.query(_RUNNING), time.monotonic())
    if not lapsed:
        return []

    def reap(c: sqlite3.Connection) -> list[tuple[str, str]]:
        t = wall()
        out = []
        for row, why in lapsed:
            fence = (row["id"], row["worker"], row["attempt"], row["lease_beat"])
            where = "WHERE id = ? AND status = 'in_progress' AND worker = ? AND attempt = ? AND lease_beat = ?"
            if row["lease_until"] is None:  # a local controller: its process died
                pid = owners.owner_pid(row["worker"])
                msg = f"its process (pid {pid}) ended without finishing it (killed?)"
                if c.execute(f"UPDATE tasks SET status = 'failed', status_message = ?, completed = ?, last_update = ? {where}",
                             (msg, t, t, *fence)).rowcount:
                    out.append((row["id"], FAILED))
                continue
            lost = row["lost_runs"] + 1
            if lost >= POISON_RUNS:
                msg = (f"worker lost {lost} times while running task {row['id']} ({row['name']!r}; last: {row['worker']}, {why}); "
                       f"not re-queued again: the task itself probably kills its worker (memory, a signal to its parent, "
                       f"a native crash). Fix it, then reset and enqueue it")
            elif row["retries_left"] > 0 and row["attempt"] > 0:
                if c.execute(
                    "UPDATE tasks SET status = 'queued', retries_left = retries_left - 1, lost_runs = ?, worker = NULL, "
                    f"lease_until = NULL, lease_seconds = NULL, enqueue_seq = ?, status_message = ?, last_update = ? {where}",
                    (lost, next_seq(c, "enqueue"), f"worker lost ({row['worker']}: {why}); re-queued", t, *fence),
                ).rowcount:
                    out.append((row["id"], QUEUED))
                continue
            else:
                msg = f"worker lost ({row['worker']}: {why}; its lease lapsed: the process running it died or hung)"
            if c.execute(
                "UPDATE tasks SET status = 'failed', status_message = ?, lost_runs = ?, lease_until = NULL, "
                f"completed = ?, last_update = ? {where}",
                (msg, lost, t, t, *fence),
            ).rowcount:
                out.append((row["id"], FAILED))
        return out

    return db.write(reap)


# -- workers ---------------------------------------------------------------------------------


def register_worker(db: Database, worker_id: str, *, kind: str, queues: Sequence[str], host: str, pid: int) -> None:
    now = wall()
    db.execute(
        "INSERT OR REPLACE INTO workers (id, kind, queues, host, pid, proc, task, started, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        (worker_id, kind, json.dumps(list(queues)), host, pid, owners.process_identity(), now, now),
    )


def worker_heartbeat(db: Database, worker_id: str, task_id: str | None) -> None:
    db.execute("UPDATE workers SET last_seen = ?, task = ? WHERE id = ?", (wall(), task_id, worker_id))


def unregister_worker(db: Database, worker_id: str) -> None:
    db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))


def registered_workers(db: Database, worker_ids: Sequence[str]) -> set[str]:
    """Which of these workers have registered (reached their serving loop) and not unregistered."""
    if not worker_ids:
        return set()
    rows = db.query(f"SELECT id FROM workers WHERE id IN ({', '.join('?' * len(worker_ids))})", tuple(worker_ids))
    return {r[0] for r in rows}


def worker_tasks(db: Database, worker_id: str) -> list[str]:
    """Ids of the tasks a worker is running (in_progress under its name)."""
    return [r[0] for r in db.query("SELECT id FROM tasks WHERE worker = ? AND status = 'in_progress'", (worker_id,))]


def running_on(db: Database, worker_ids: Sequence[str]) -> dict[str, sqlite3.Row]:
    """{worker id: (id, type, name) of the task it runs} for those of these workers that hold one."""
    if not worker_ids:
        return {}
    rows = db.query(f"SELECT worker, id, type, name FROM tasks WHERE status = 'in_progress' "
                    f"AND worker IN ({', '.join('?' * len(worker_ids))})", tuple(worker_ids))
    return {r["worker"]: r for r in rows}


def queued_on(db: Database, queue: str, limit: int = 20) -> list[sqlite3.Row]:
    """(id, name, type, parent) of the first `limit` tasks waiting on `queue`, in the order they will run."""
    return db.query("SELECT id, name, type, parent FROM tasks WHERE status = 'queued' AND queue = ? "
                    "ORDER BY priority DESC, enqueue_seq LIMIT ?", (queue, limit))


def live_workers(db: Database, max_age: float) -> list[dict]:
    """Workers that are alive (queues decoded).

    A worker of this machine is alive while its process is (store/owners.py), whatever the clocks
    say; one this process cannot judge (another host or container) counts while it heart-beat within
    `max_age` seconds by this process's clock.
    """
    now = wall()
    out = []
    for r in db.query("SELECT * FROM workers ORDER BY id"):
        state = owners.owner_state(r["id"], r["proc"])
        if state == "alive" or (state is None and r["last_seen"] >= now - max_age):
            out.append(dict(r, queues=json.loads(r["queues"])))
    return out
