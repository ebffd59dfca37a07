"""Waiting for tasks to finish, and noticing dead workers while waiting.

Whoever waits also reaps: a task whose worker died (its lease lapsed) is re-queued or failed by the
next process that looks, so nothing stays in_progress forever even with no pool or daemon alive.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from . import status as _status
from .errors import StepFailed
from .store import tasks

if TYPE_CHECKING:
    from .task import Task

_REAP_EVERY = 1.0


def wait_for_tasks(
    waiting: Sequence[Task],
    status: Iterable[str] = (_status.COMPLETED, _status.PUBLISHED, _status.STOPPED),
    raise_on_status: Iterable[str] | None = (_status.FAILED,),
    poll: float = 0.05,
    timeout: float | None = None,
) -> list[Task]:
    """Block until every task reaches a status in `status` (or `raise_on_status`, which raises).

    Returns the tasks re-read. Raises TimeoutError naming the tasks still pending after `timeout` s.
    """
    wanted = set(status)
    bad = set(raise_on_status or ())
    deadline = None if timeout is None else time.monotonic() + timeout
    last_reap = 0.0
    pending = {t.id: t for t in waiting}
    while True:
        for t in list(pending.values()):
            st = t.get_status()
            if st in bad:
                raise StepFailed(f"task {t.id} ({t.name!r}) ended {st}: {t.data.status_message or 'no message'}")
            if st in wanted:
                del pending[t.id]
        if not pending:
            return list(waiting)
        now = time.monotonic()
        if now - last_reap >= _REAP_EVERY:
            tasks.reap_expired(waiting[0]._db)
            last_reap = now
        if deadline is not None and now >= deadline:
            names = ", ".join(f"{t.id} ({t.name!r}: {t.status})" for t in pending.values())
            raise TimeoutError(f"timed out after {timeout} s waiting for: {names}")
        time.sleep(poll)
