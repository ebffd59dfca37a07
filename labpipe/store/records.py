"""Records that cross the store boundary: a task row, decoded; a lease on a task's run."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field


@dataclass
class TaskRow:
    """One row of `tasks`, with its JSON columns decoded."""

    id: str
    name: str
    project: str
    type: str
    status: str
    status_message: str = ""
    parent: str | None = None
    comment: str = ""
    script: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    worker: str | None = None
    attempt: int = 0
    lease_until: float | None = None
    retries_left: int = 0
    cache_key: str | None = None
    tags: list[str] = field(default_factory=list)
    system_tags: list[str] = field(default_factory=list)
    archived: bool = False
    created: float = 0.0
    started: float | None = None
    completed: float | None = None
    last_update: float = 0.0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> TaskRow:
        return cls(
            id=row["id"],
            name=row["name"],
            project=row["project"],
            type=row["type"],
            status=row["status"],
            status_message=row["status_message"],
            parent=row["parent"],
            comment=row["comment"],
            script=json.loads(row["script"]),
            runtime=json.loads(row["runtime"]),
            queue=row["queue"],
            priority=row["priority"],
            worker=row["worker"],
            attempt=row["attempt"],
            lease_until=row["lease_until"],
            retries_left=row["retries_left"],
            cache_key=row["cache_key"],
            tags=json.loads(row["tags"]),
            system_tags=json.loads(row["system_tags"]),
            archived=bool(row["archived"]),
            created=row["created"],
            started=row["started"],
            completed=row["completed"],
            last_update=row["last_update"],
        )


@dataclass(frozen=True)
class Lease:
    """One run of a task, as its owner holds it: the fence of every verb that extends or ends that run.

    task_id: the task; owner: who claimed it (a worker id such as `pool:host:pid`, or a `Task.init`
    script's `local:host:pid`); attempt: which claim of the task this is (1 for the first). A verb
    given a lease whose owner or attempt the task no longer has changes nothing: a worker that lost
    its lease (reaped, stopped and re-run) can never overwrite a newer attempt.

    task: the task's row as the claim read it (`leases.claim_next`), None for a lease made from its
    three values. Not part of the lease's identity (equality, hash, repr): it spares the worker a
    second read of the row on every claim (~20 µs of a hop that takes well under a millisecond).
    """

    task_id: str
    owner: str
    attempt: int
    task: TaskRow | None = field(default=None, compare=False, repr=False)
