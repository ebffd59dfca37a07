"""Store verbs for who runs a task and what happens when they stop or die. All lease SQL lives here.

`tasks.py` holds what a task is (its row, parameters, queues); this module holds its runs. The model
(ARCHITECTURE.md, "Tasks, statuses, leases"): a worker claims a queued task in one transaction,
becoming its owner (`worker`) with a new `attempt` and a `lease_until` it must keep renewing. Every
end of a run (finish, requeue, finish_run) is fenced by `(worker, attempt)`, so a stale worker can
never overwrite a newer attempt. When an owner dies its lease lapses and `reap_expired`, which any
process may call, re-queues the task (while `retries_left`) or fails it. A task run in a user's own
process (`local:<host>:<pid>`) holds no lease: that process's death is what ends it. Stopping a
pipeline stops everything below it (`stop_below`), and a run's own ending never overwrites a stop
(`end_run`). The `workers` table (register, heartbeat, live_workers) records who is serving which
queues.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence

from ..errors import TaskNotFound
from ..status import COMPLETED, FAILED, IN_PROGRESS, QUEUED, STOPPED, check_status
from . import blobs
from .db import Database
from .records import TaskRow
from .tasks import _next_seq


def claim_next(db: Database, queues: Sequence[str], worker: str, lease_seconds: float) -> TaskRow | None:
    """Lease the next task from the first non-empty queue (priority, then FIFO), or None.

    One BEGIN IMMEDIATE transaction: marks it in_progress, owned by `worker`, attempt + 1, with a
    lease that the worker must renew; nobody else can claim it meanwhile.
    """
    def claim(c: sqlite3.Connection) -> TaskRow | None:
        now = time.time()
        for queue in queues:
            row = c.execute(
                "UPDATE tasks SET status = 'in_progress', worker = ?, attempt = attempt + 1, lease_until = ?, "
                "started = ?, last_update = ?, status_message = '' "
                "WHERE id = (SELECT id FROM tasks WHERE status = 'queued' AND queue = ? "
                "ORDER BY priority DESC, enqueue_seq LIMIT 1) RETURNING *",
                (worker, now + lease_seconds, now, now, queue),
            ).fetchone()
            if row is not None:
                return TaskRow.from_row(row)
        return None

    return db.write(claim)


def renew_lease(db: Database, task_id: str, worker: str, attempt: int, lease_seconds: float) -> str | None:
    """Extend this worker's lease; returns the task's status, or None if the lease is no longer ours.

    A status other than in_progress (e.g. 'stopped' set by a user) tells the worker to end the run.
    """
    def renew(c: sqlite3.Connection) -> str | None:
        now = time.time()
        row = c.execute("SELECT status, worker, attempt FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None or row["worker"] != worker or row["attempt"] != attempt:
            return None
        if row["status"] == IN_PROGRESS:
            c.execute("UPDATE tasks SET lease_until = ?, last_update = ? WHERE id = ?", (now + lease_seconds, now, task_id))
        return row["status"]

    return db.write(renew)


def finish(db: Database, task_id: str, worker: str, attempt: int, status: str, message: str = "") -> bool:
    """Record the end of a run, fenced by owner and attempt: a stale worker cannot overwrite a newer run."""
    now = time.time()
    n = db.execute(
        "UPDATE tasks SET status = ?, status_message = ?, completed = ?, lease_until = NULL, last_update = ? "
        "WHERE id = ? AND worker = ? AND attempt = ? AND status = 'in_progress'",
        (status, message, now, now, task_id, worker, attempt),
    )
    return n == 1


def requeue(db: Database, task_id: str, worker: str, attempt: int, message: str) -> bool:
    """Put a task this worker holds back on its queue (shutdown grace period ran out)."""
    def put(c: sqlite3.Connection) -> bool:
        n = c.execute(
            "UPDATE tasks SET status = 'queued', worker = NULL, lease_until = NULL, status_message = ?, enqueue_seq = ?, "
            "last_update = ? WHERE id = ? AND worker = ? AND attempt = ? AND status = 'in_progress'",
            (message, _next_seq(c, "enqueue"), time.time(), task_id, worker, attempt),
        ).rowcount
        return n == 1

    return db.write(put)


def finish_run(
    db: Database,
    task_id: str,
    worker: str,
    attempt: int,
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
    Returns None, recording nothing, when the run is no longer this worker's (stopped, reaped, re-run):
    the fence on (worker, attempt) means a stale worker can never overwrite a newer attempt.
    """
    check_status(status)
    now = time.time()

    def record(c: sqlite3.Connection) -> str | None:
        row = c.execute(
            "SELECT retries_left FROM tasks WHERE id = ? AND worker = ? AND attempt = ? AND status = 'in_progress'",
            (task_id, worker, attempt),
        ).fetchone()
        if row is None:
            return None
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
        if status == FAILED and retry and row["retries_left"] > 0:
            c.execute(
                "UPDATE tasks SET status = 'queued', retries_left = retries_left - 1, worker = NULL, lease_until = NULL, "
                "enqueue_seq = ?, status_message = ?, last_update = ? WHERE id = ?",
                (_next_seq(c, "enqueue"), f"retrying after: {message}", now, task_id),
            )
            return QUEUED
        c.execute(
            "UPDATE tasks SET status = ?, status_message = ?, completed = ?, lease_until = NULL, last_update = ? WHERE id = ?",
            (status, message, now, now, task_id),
        )
        return status

    return db.write(record)


def run_state(db: Database, task_id: str) -> tuple[str, str | None, int] | None:
    """(status, worker, attempt) of a task, or None if it is gone: a worker's cheap "is it still mine?" read."""
    row = db.query_one("SELECT status, worker, attempt FROM tasks WHERE id = ?", (task_id,))
    return None if row is None else (row[0], row[1], row[2])


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


def has_expired_leases(db: Database, now: float | None = None) -> bool:
    """Whether reap_expired has anything to do (a read, so idle workers do not take the write lock for nothing)."""
    t = time.time() if now is None else now
    return db.query_one(
        "SELECT 1 FROM tasks WHERE status = 'in_progress' AND lease_until IS NOT NULL AND lease_until < ? LIMIT 1", (t,)
    ) is not None or bool(_dead_local_owners(db))


def _dead_local_owners(db: Database) -> list[tuple[str, int]]:
    """(task id, pid) of in_progress tasks run, without a lease, by a process of this host that no
    longer exists.

    Such a task is a pipeline controller running in a user's own process (local or debug mode, owner
    'local:<host>:<pid>'): nothing would renew a lease between the user's own statements, so it is
    its process's death that ends it. (A `Task.init` session renews a lease from a thread of its own.)
    """
    rows = db.query(
        "SELECT id, worker FROM tasks WHERE status = 'in_progress' AND lease_until IS NULL AND worker LIKE ? || '%'",
        (_local_prefix(),),
    )
    return [(row["id"], pid) for row in rows if (pid := _dead_local_pid(row["worker"])) is not None]


def _local_prefix() -> str:
    return f"local:{os.uname().nodename}:"


def _dead_local_pid(owner: str | None) -> int | None:
    """The pid of `owner` if it names a process of this host ('local:<host>:<pid>') that is gone.
    A pid reused since then counts as alive: the task stays in_progress (the safe side)."""
    prefix = _local_prefix()
    if not owner or not owner.startswith(prefix) or not owner[len(prefix):].isdigit():
        return None
    pid = int(owner[len(prefix):])
    return None if _alive(pid) else pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def stop_below(db: Database, task_id: str, message: str) -> list[str]:
    """Stop every queued or running task below `task_id` (a pipeline's steps, nested runs and their
    steps), in one transaction; returns their ids. Their workers end their processes on their next look."""
    now = time.time()

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
    row = db.query_one("SELECT type, status, worker, lease_until FROM tasks WHERE id = ?", (parent_id,))
    if row is None or row["type"] != "controller":
        return None
    if row["status"] in (STOPPED, FAILED, COMPLETED):
        return f"its pipeline {parent_id} has ended ({row['status']})"
    if row["status"] == IN_PROGRESS and row["lease_until"] is None:
        pid = _dead_local_pid(row["worker"])
        if pid is not None:
            return f"its pipeline {parent_id} is no longer running (its process, pid {pid}, died)"
    return None


def end_run(db: Database, task_id: str, status: str, message: str) -> str:
    """Record how a run (a pipeline's controller) ended, unless it was stopped meanwhile: a stop from
    outside (`labpipe stop`, Ctrl-C in the process that waits for it) is never overwritten by the
    run's own ending. Returns the status the task has now."""
    check_status(status)
    now = time.time()
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
    """End the leases of a worker known to be dead (its pool saw it exit), so the next reap handles its task now."""
    return db.execute("UPDATE tasks SET lease_until = 0 WHERE worker = ? AND status = 'in_progress'", (worker,))


def reap_expired(db: Database, now: float | None = None) -> list[tuple[str, str]]:
    """Deal with in_progress tasks whose lease lapsed (their worker died): re-queue or fail them.

    Returns (task_id, new_status) pairs. Safe to call from any process at any time.
    """
    dead_owners = _dead_local_owners(db)

    def reap(c: sqlite3.Connection) -> list[tuple[str, str]]:
        t = time.time() if now is None else now
        out = []
        for task_id, pid in dead_owners:
            gone = c.execute(
                "UPDATE tasks SET status = 'failed', status_message = ?, completed = ?, last_update = ? "
                "WHERE id = ? AND status = 'in_progress' AND lease_until IS NULL RETURNING id",
                (f"its process (pid {pid}) ended without finishing it (killed?)", t, t, task_id),
            ).fetchone()
            if gone is not None:
                out.append((task_id, FAILED))
        rows = c.execute(
            "SELECT id, retries_left, attempt FROM tasks WHERE status = 'in_progress' AND lease_until IS NOT NULL AND lease_until < ?",
            (t,),
        ).fetchall()
        for row in rows:
            if row["retries_left"] > 0 and row["attempt"] > 0:
                c.execute(
                    "UPDATE tasks SET status = 'queued', retries_left = retries_left - 1, worker = NULL, lease_until = NULL, "
                    "enqueue_seq = ?, status_message = 'worker lost; re-queued', last_update = ? WHERE id = ?",
                    (_next_seq(c, "enqueue"), t, row["id"]),
                )
                out.append((row["id"], QUEUED))
            else:
                c.execute(
                    "UPDATE tasks SET status = 'failed', status_message = 'worker lost (its lease lapsed: the process running it died)', "
                    "lease_until = NULL, completed = ?, last_update = ? WHERE id = ?",
                    (t, t, row["id"]),
                )
                out.append((row["id"], FAILED))
        return out

    return db.write(reap)


# -- workers ---------------------------------------------------------------------------------


def register_worker(db: Database, worker_id: str, *, kind: str, queues: Sequence[str], host: str, pid: int) -> None:
    now = time.time()
    db.execute(
        "INSERT OR REPLACE INTO workers (id, kind, queues, host, pid, task, started, last_seen) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
        (worker_id, kind, json.dumps(list(queues)), host, pid, now, now),
    )


def worker_heartbeat(db: Database, worker_id: str, task_id: str | None) -> None:
    db.execute("UPDATE workers SET last_seen = ?, task = ? WHERE id = ?", (time.time(), task_id, worker_id))


def unregister_worker(db: Database, worker_id: str) -> None:
    db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))


def live_workers(db: Database, max_age: float) -> list[dict]:
    """Workers that heart-beat within `max_age` seconds (queues decoded)."""
    rows = db.query("SELECT * FROM workers WHERE last_seen >= ? ORDER BY id", (time.time() - max_age,))
    return [dict(r, queues=json.loads(r["queues"])) for r in rows]
