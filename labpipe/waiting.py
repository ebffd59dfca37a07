"""Waiting for tasks to finish, and noticing dead workers while waiting.

Whoever waits also reaps: a task whose worker died (its lease lapsed) is re-queued or failed by the
next process that looks, so nothing stays in_progress forever even with no pool or daemon alive.
And whoever waits on a task sitting in a queue that no live worker serves gets a QueueError after
`UNSERVED_TIMEOUT` seconds, naming the queue and how to serve it, rather than a silent hang.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from . import status as _status
from .errors import QueueError, StepFailed
from .store import leases, tasks

if TYPE_CHECKING:
    from .task import Task

_REAP_EVERY = 1.0

#: A worker (pool or `labpipe agent`) heart-beats every 2 s; one silent this long is taken for dead.
WORKER_MAX_AGE = 10.0

#: Seconds a task may wait in a queue that no live worker serves before waiting on it fails.
UNSERVED_TIMEOUT = float(os.environ.get("LABPIPE_UNSERVED_TIMEOUT", "30"))


def wait_for_tasks(
    waiting: Sequence[Task],
    status: Iterable[str] = (_status.COMPLETED, _status.PUBLISHED, _status.STOPPED),
    raise_on_status: Iterable[str] | None = (_status.FAILED,),
    poll: float = 0.05,
    timeout: float | None = None,
    unserved_timeout: float | None = None,
) -> list[Task]:
    """Block until every task reaches a status in `status` (or `raise_on_status`, which raises).

    Returns the tasks re-read. Raises TimeoutError naming the tasks still pending after `timeout` s,
    and QueueError when a task has sat for `unserved_timeout` s (default UNSERVED_TIMEOUT, env
    LABPIPE_UNSERVED_TIMEOUT) in a queue that no live worker serves.
    """
    wanted = set(status)
    bad = set(raise_on_status or ())
    unserved_limit = UNSERVED_TIMEOUT if unserved_timeout is None else unserved_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    last_reap = 0.0
    pending = {t.id: t for t in waiting}
    unserved_since: dict[str, float] = {}
    db = waiting[0].db if waiting else None
    while True:
        states = tasks.task_states(db, list(pending)) if pending else {}
        queued: dict[str, str] = {}
        for tid, t in list(pending.items()):
            st, queue, message = states.get(tid) or (t.get_status(), t.data.queue, t.data.status_message)
            if st in bad:
                raise StepFailed(f"task {t.id} ({t.name!r}) ended {st}: {message or 'no message'}")
            if st in wanted:
                del pending[tid]
            elif st == _status.QUEUED and queue:
                queued[tid] = queue
        if not pending:
            for t in waiting:
                t.reload()
            return list(waiting)
        now = time.monotonic()
        if now - last_reap >= _REAP_EVERY:
            leases.reap_expired(db)
            _check_served(db, queued, pending, unserved_since, unserved_limit, now)
            last_reap = now
        if deadline is not None and now >= deadline:
            names = ", ".join(f"{t.id} ({t.name!r}: {t.get_status()})" for t in pending.values())
            raise TimeoutError(f"timed out after {timeout} s waiting for: {names}")
        time.sleep(poll)


def _check_served(db, queued: dict[str, str], pending: dict, since: dict[str, float], limit: float, now: float) -> None:
    """Raise QueueError for a queue that held a waited-on task with no live worker for `limit` seconds."""
    if not queued:
        since.clear()
        return
    served = {q for w in leases.live_workers(db, WORKER_MAX_AGE) for q in w["queues"]}
    for queue in set(since) - set(queued.values()) | (set(since) & served):
        del since[queue]
    for tid, queue in queued.items():
        if queue in served:
            continue
        first = since.setdefault(queue, now)
        if now - first >= limit:
            t = pending[tid]
            raise QueueError(
                f"task {tid} ({t.name!r}) has waited {now - first:.0f} s on queue {queue!r}, which no worker serves; "
                f"start one with `labpipe agent --queue {queue}` (or use a pipeline's built-in pool, or enqueue on a served queue)"
            )
