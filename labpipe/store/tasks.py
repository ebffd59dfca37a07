"""Store verbs for tasks, their parameters and queues: what a task is. Who runs it, and what
happens when they stop or die (claims, leases, fenced finishes, reaping, workers), is `leases.py`.

Every status change is one `UPDATE ... WHERE status IN (allowed)` so that two processes racing
on one task cannot both win; the loser reads the current status and gets a clear error.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..errors import IllegalTransition, QueueError, TaskNotFound
from ..status import ALLOWED_FROM, COMPLETED, FAILED, IN_PROGRESS, QUEUED, STOPPED, check_status
from .db import Database
from .records import TaskRow

ARCHIVED_TAG = "archived"

_COLUMNS = {"name", "project", "type", "parent", "comment", "script", "runtime", "tags", "system_tags", "cache_key", "retries_left", "status_message"}
_JSON_COLUMNS = {"script", "runtime", "tags", "system_tags"}


def new_id() -> str:
    """A fresh task id: 32 hex characters, as ClearML's."""
    return uuid.uuid4().hex


def create_task(
    db: Database,
    *,
    name: str,
    project: str = "",
    type: str = "training",
    parent: str | None = None,
    comment: str = "",
    script: dict | None = None,
    runtime: dict | None = None,
    tags: Sequence[str] = (),
    system_tags: Sequence[str] = (),
    cache_key: str | None = None,
    retries_left: int = 0,
    params: Iterable[tuple[str, str, str, str, str]] = (),
    status: str = "created",
    owner: str | None = None,
    lease_until: float | None = None,
    queue: str | None = None,
    run_of: str | None = None,
) -> TaskRow:
    """Insert a task (and its parameters) in one transaction and return its row.

    params: (section, name, value_json, type, description) tuples.
    status: 'created', or 'in_progress' for a task that starts running now (`Task.init`), in which
    case `owner` and `lease_until` say who runs it and until when it must renew.
    queue: create it already queued there (one transaction instead of create + enqueue: pipelines
    launch many steps).
    run_of: a pipeline's name; the task (a run of it) is named `name #N` when N-1 runs of that
    pipeline exist in the project, counted in the inserting transaction so that concurrent runs
    get distinct numbers (ClearML's add_run_number).
    """
    if queue is not None:
        status = QUEUED
    now = time.time()
    running = status == IN_PROGRESS
    record = TaskRow(
        id=new_id(), name=name, project=project, type=type, status=status, parent=parent, comment=comment,
        script=dict(script or {}), runtime=dict(runtime or {}), queue=queue, worker=owner, attempt=1 if running else 0,
        lease_until=lease_until, retries_left=retries_left, cache_key=cache_key, tags=list(tags),
        system_tags=list(system_tags), archived=ARCHIVED_TAG in system_tags, created=now,
        started=now if running else None, last_update=now,
    )
    params = list(params)
    named = db.write(lambda c: _insert_task(c, record, params, run_of))
    return dataclasses.replace(record, name=named)


def _insert_task(c: sqlite3.Connection, record: TaskRow, params: list[tuple[str, str, str, str, str]],
                 run_of: str | None) -> str:
    """Inside a write transaction: insert a new task's row and parameters; returns the name it got.

    run_of: named as that pipeline's next run (counted here, under the write lock). A queued task's
    queue is created if new and the task takes the next place in enqueue order.
    """
    columns = {
        "id": record.id, "name": record.name, "project": record.project, "type": record.type, "status": record.status,
        "parent": record.parent, "comment": record.comment, "script": json.dumps(record.script),
        "runtime": json.dumps(record.runtime), "tags": json.dumps(record.tags), "system_tags": json.dumps(record.system_tags),
        "archived": int(record.archived), "cache_key": record.cache_key, "retries_left": record.retries_left,
        "created": record.created, "last_update": record.last_update, "started": record.started,
        "worker": record.worker, "attempt": record.attempt, "lease_until": record.lease_until,
    }
    if run_of is not None:
        columns["name"] = _run_name(c, record.name, record.project, record.type, run_of)
    if record.queue is not None:
        c.execute("INSERT OR IGNORE INTO queues(name, created) VALUES (?, ?)", (record.queue, record.created))
        columns.update(queue=record.queue, enqueue_seq=next_seq(c, "enqueue"))
    c.execute(f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", tuple(columns.values()))
    if params:
        c.executemany(
            "INSERT OR REPLACE INTO params (task, section, name, value, type, description) VALUES (?, ?, ?, ?, ?, ?)",
            [(record.id, *p) for p in params],
        )
    return columns["name"]


def _run_name(c: sqlite3.Connection, name: str, project: str, type: str, pipeline: str) -> str:
    """`name`, or `name #N` when N-1 runs of `pipeline` exist in the project (ClearML's add_run_number)."""
    runs = c.execute(
        "SELECT count(*) FROM tasks WHERE project = ? AND type = ? AND json_extract(runtime, '$.pipeline_name') = ?",
        (project, type, pipeline),
    ).fetchone()[0]
    return f"{name} #{runs + 1}" if runs else name


#: the shortest id prefix taken for a whole id (as git's abbreviated hashes)
MIN_PREFIX = 4


def get_task(db: Database, task_id: str) -> TaskRow:
    """The task with this id, or with an id starting with it (a unique prefix of 4 or more characters,
    as in git); TaskNotFound naming it (and, for an ambiguous prefix, its candidates) otherwise."""
    row = db.query_one("SELECT * FROM tasks WHERE id = ?", (task_id,))
    if row is None:
        row = db.query_one("SELECT * FROM tasks WHERE id = ?", (resolve_prefix(db, task_id),))
    return TaskRow.from_row(row)


def resolve_prefix(db: Database, prefix: str) -> str:
    """The one task id that starts with `prefix`; TaskNotFound if none or several do.

    One range scan of the primary key (ids are lowercase hex), so it costs the same over 100,000 tasks.
    """
    text = str(prefix).strip().lower()
    if len(text) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in text):
        ids = [r[0] for r in db.query("SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT 11", (text, text + "g"))]
    else:
        ids = []
    if len(ids) == 1:
        return ids[0]
    if ids:
        listed = "\n".join(f"  {_describe(db, i)}" for i in ids[:10]) + ("\n  ..." if len(ids) > 10 else "")
        raise TaskNotFound(f"the id prefix {prefix!r} is ambiguous: {'more than 10' if len(ids) > 10 else len(ids)} tasks "
                           f"start with it; give more characters:\n{listed}")
    hint = "" if len(text) >= MIN_PREFIX else f" (a prefix needs {MIN_PREFIX} or more hex characters)"
    raise TaskNotFound(f"no task with id {prefix!r}{hint} in the store {db.root}")


def _describe(db: Database, task_id: str) -> str:
    row = db.query_one("SELECT name, status, created FROM tasks WHERE id = ?", (task_id,))
    return f"{task_id}  {row['status']:<11}  {row['name']}" if row else task_id


def find_tasks(
    db: Database,
    *,
    ids: Sequence[str] | None = None,
    project: str | None = None,
    name: str | None = None,
    status: Sequence[str] | None = None,
    type: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    parent: str | None = None,
    include_archived: bool = False,
    limit: int | None = None,
    newest_first: bool = True,
) -> list[TaskRow]:
    """Tasks matching every filter given.

    tags: a task matches if it has any of the plain tags and none of the '-tag' ones (ClearML's rule).
    """
    where, args = [], []
    if ids is not None:
        where.append(f"id IN ({', '.join('?' * len(ids))})")
        args += list(ids)
    if project is not None:
        where.append("project = ?")
        args.append(project)
    if name is not None:
        where.append("name = ?")
        args.append(name)
    if status:
        where.append(f"status IN ({', '.join('?' * len(status))})")
        args += list(status)
    if type:
        where.append(f"type IN ({', '.join('?' * len(type))})")
        args += list(type)
    if parent is not None:
        where.append("parent = ?")
        args.append(parent)
    if not include_archived:
        where.append("archived = 0")
    if tags:
        wanted = [t for t in tags if not t.startswith("-")]
        unwanted = [t[1:] for t in tags if t.startswith("-")]
        if wanted:
            where.append(f"EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value IN ({', '.join('?' * len(wanted))}))")
            args += wanted
        if unwanted:
            where.append(f"NOT EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value IN ({', '.join('?' * len(unwanted))}))")
            args += unwanted
    sql = "SELECT * FROM tasks"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created " + ("DESC" if newest_first else "ASC")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [TaskRow.from_row(r) for r in db.query(sql, tuple(args))]


def update_task(db: Database, task_id: str, **fields) -> None:
    """Set plain fields of a task (name, comment, script, runtime, tags, system_tags, ...) to these values.

    A value computed from what the task held (a tag added, a runtime key changed) goes through
    `modify_task` instead, which reads the row in the same transaction.
    """
    sql, args = _update_sql(fields)
    if db.execute(sql, (*args, task_id)) == 0:
        raise TaskNotFound(f"no task with id {task_id!r} in the store {db.root}")


def modify_task(db: Database, task_id: str, change: Callable[[TaskRow], Mapping[str, Any]]) -> TaskRow:
    """Change a task's fields from its current values, in one BEGIN IMMEDIATE transaction; returns the new row.

    change: gets the task's row, read inside the transaction (so under the write lock: no other
    process can write between the read and the update), and returns the fields to set, as
    `update_task` takes them. It must be free of side effects: the transaction may be retried.
    Why: a change computed from a row read in an earlier transaction loses whatever another process
    wrote in between (4 processes adding 50 tags each to one task kept 55 of the 200 that way).
    """
    def edit(c: sqlite3.Connection) -> TaskRow:
        row = c.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r} in the store {db.root}")
        fields = dict(change(TaskRow.from_row(row)))
        if not fields:
            return TaskRow.from_row(row)
        sql, args = _update_sql(fields)
        return TaskRow.from_row(c.execute(sql + " RETURNING *", (*args, task_id)).fetchone())

    return db.write(edit)


def edit_tags(db: Database, task_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = (), system: bool = False) -> list[str]:
    """Add and remove tags (system tags if `system`) of a task, keeping the others and their order;
    returns the task's tags now.

    One transaction that reads the tags it changes, so tags added from several processes at once are
    all kept. (Reads only that column: a task's other JSON columns can be large.)
    """
    adding, removing = list(dict.fromkeys(add)), set(remove)
    column = "system_tags" if system else "tags"

    def edit(c: sqlite3.Connection) -> list[str]:
        row = c.execute(f"SELECT {column} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r} in the store {db.root}")
        old = json.loads(row[0])
        new = [t for t in old if t not in removing] + [t for t in adding if t not in old and t not in removing]
        if new != old:
            sql, args = _update_sql({column: new})
            c.execute(sql, (*args, task_id))
        return new

    return db.write(edit)


def _update_sql(fields: Mapping[str, Any]) -> tuple[str, list]:
    """`UPDATE tasks SET ... WHERE id = ?` for these fields (JSON columns encoded), and its arguments
    but the id."""
    bad = set(fields) - _COLUMNS
    if bad:
        raise ValueError(f"cannot set task field(s) {sorted(bad)}; settable: {sorted(_COLUMNS)}")
    sets, args = [], []
    for key, value in fields.items():
        sets.append(f"{key} = ?")
        args.append(json.dumps(value) if key in _JSON_COLUMNS else value)
        if key == "system_tags":
            sets.append("archived = ?")
            args.append(int(ARCHIVED_TAG in value))
    sets.append("last_update = ?")
    args.append(time.time())
    return f"UPDATE tasks SET {', '.join(sets)} WHERE id = ?", args


def _current_status(c: sqlite3.Connection, db: Database, task_id: str) -> str:
    row = c.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        raise TaskNotFound(f"no task with id {task_id!r} in the store {db.root}")
    return row[0]


def set_status(db: Database, task_id: str, to: str, message: str | None = None, *, force: bool = False) -> TaskRow:
    """Move a task to status `to` and return its new row. IllegalTransition names both states.

    force: skip the transition check (ClearML's `force=True`), e.g. to mark a created task completed
    from a script that did the work itself.
    """
    check_status(to)
    now = time.time()
    sets = ["status = ?", "last_update = ?"]
    args: list = [to, now]
    if message is not None:
        sets.append("status_message = ?")
        args.append(message)
    if to == IN_PROGRESS:
        sets.append("started = ?")
        args.append(now)
    if to in (COMPLETED, FAILED, STOPPED):
        sets += ["completed = ?", "lease_until = NULL"]
        args.append(now)
    if to == "created":
        sets += ["started = NULL", "completed = NULL", "queue = NULL", "worker = NULL", "lease_until = NULL", "status_message = ''"]
    allowed = "" if force else f" AND status IN ({', '.join('?' * len(ALLOWED_FROM[to]))})"
    sql = f"UPDATE tasks SET {', '.join(sets)} WHERE id = ?{allowed} RETURNING *"
    params = (*args, task_id, *([] if force else sorted(ALLOWED_FROM[to])))

    def change(c: sqlite3.Connection) -> TaskRow:
        row = c.execute(sql, params).fetchone()
        if row is None:  # either no such task, or a transition the model forbids: say which
            old = _current_status(c, db, task_id)
            raise IllegalTransition(
                f"task {task_id} cannot go from {old!r} to {to!r}; allowed from: {', '.join(sorted(ALLOWED_FROM[to]))}"
            )
        return TaskRow.from_row(row)

    return db.write(change)


def next_seq(c: sqlite3.Connection, name: str) -> int:
    """Inside a write transaction: the next value of counter `name` (1 for a new one). Enqueue order
    is counter 'enqueue': every verb that puts a task on a queue (here and in leases.py) takes one."""
    row = c.execute("UPDATE seq SET value = value + 1 WHERE name = ? RETURNING value", (name,)).fetchone()
    if row is not None:
        return row[0]
    c.execute("INSERT INTO seq(name, value) VALUES (?, 1)", (name,))
    return 1


_ENQUEUE_FROM = tuple(sorted(ALLOWED_FROM[QUEUED] - {IN_PROGRESS}))


def enqueue(db: Database, task_id: str, queue: str, priority: int = 0, *, create_queue: bool = True) -> TaskRow:
    """Put a task on a queue (status -> queued) and return its new row. Unknown queues are created
    unless told not to."""
    now = time.time()

    def put(c: sqlite3.Connection) -> TaskRow:
        if create_queue:
            c.execute("INSERT OR IGNORE INTO queues(name, created) VALUES (?, ?)", (queue, now))
        elif c.execute("SELECT 1 FROM queues WHERE name = ?", (queue,)).fetchone() is None:
            raise QueueError(f"there is no queue named {queue!r}; known queues: {', '.join(_queue_names(c))}")
        row = c.execute(
            "UPDATE tasks SET status = 'queued', queue = ?, priority = ?, enqueue_seq = ?, worker = NULL, "
            "lease_until = NULL, lost_runs = 0, status_message = '', completed = NULL, last_update = ? "
            f"WHERE id = ? AND status IN ({', '.join('?' * len(_ENQUEUE_FROM))}) RETURNING *",
            (queue, priority, next_seq(c, "enqueue"), now, task_id, *_ENQUEUE_FROM),
        ).fetchone()
        if row is None:
            old = _current_status(c, db, task_id)
            raise IllegalTransition(
                f"task {task_id} cannot be enqueued from status {old!r}; reset it first (task.reset()) or clone it"
            )
        return TaskRow.from_row(row)

    return db.write(put)


def dequeue(db: Database, task_id: str) -> bool:
    """Take a queued task off its queue (status -> created). False if it was no longer queued."""
    n = db.execute(
        "UPDATE tasks SET status = 'created', queue = NULL, last_update = ? WHERE id = ? AND status = 'queued'",
        (time.time(), task_id),
    )
    return n == 1


def task_states(db: Database, task_ids: Sequence[str]) -> dict[str, tuple[str, str | None, str]]:
    """{id: (status, queue, status_message)} for many tasks in one read (waiting on a batch)."""
    out: dict[str, tuple[str, str | None, str]] = {}
    ids = list(task_ids)
    for i in range(0, len(ids), 500):  # SQLite's variable limit
        chunk = ids[i:i + 500]
        for r in db.query(f"SELECT id, status, queue, status_message FROM tasks WHERE id IN ({', '.join('?' * len(chunk))})", tuple(chunk)):
            out[r[0]] = (r[1], r[2], r[3])
    return out


def clone_task(db: Database, source_id: str, *, name: str | None = None, parent: str | None = None, project: str | None = None) -> TaskRow:
    """A new 'created' task with the source's definition and parameters, never its outputs.

    Of the source's runtime record the clone keeps what says what the task is (which pipeline and
    version it runs, its DAG, its configuration), so a cloned pipeline run lists with its version and
    counts as a run of its pipeline; what describes a past execution (worker, imports, ...) is
    dropped, as ClearML's clone drops the source's execution results. A pipeline run's clone, unless
    given a name, is named as that pipeline's next run (`name #4`), counted in the inserting transaction.
    """
    keep = ("pipeline_name", "pipeline_version", "dag", "configuration")
    tid = new_id()
    now = time.time()

    def copy(c: sqlite3.Connection) -> None:
        src = c.execute("SELECT runtime, project, type FROM tasks WHERE id = ?", (source_id,)).fetchone()
        if src is None:
            raise TaskNotFound(f"cannot clone: no task with id {source_id!r} in the store {db.root}")
        old = json.loads(src[0] or "{}")
        runtime = {k: old[k] for k in keep if k in old}
        run_name = name
        if run_name is None and old.get("pipeline_name"):  # a run of a pipeline: its next number, not the source's
            run_name = _run_name(c, old["pipeline_name"], project or src[1], src[2], old["pipeline_name"])
        c.execute(
            "INSERT INTO tasks (id, name, project, type, status, parent, comment, script, runtime, tags, system_tags, "
            "retries_left, archived, created, last_update) "
            "SELECT ?, COALESCE(?, name), COALESCE(?, project), type, 'created', ?, comment, script, ?, tags, "
            "(SELECT COALESCE(json_group_array(value), '[]') FROM json_each(src.system_tags) WHERE value != 'archived'), "
            "retries_left, 0, ?, ? FROM tasks AS src WHERE id = ?",
            (tid, run_name, project, parent if parent is not None else source_id, json.dumps(runtime), now, now, source_id),
        )
        c.execute(
            "INSERT INTO params (task, section, name, value, type, description) "
            "SELECT ?, section, name, value, type, description FROM params WHERE task = ?",
            (tid, source_id),
        )

    db.write(copy)
    return get_task(db, tid)


def delete_task(db: Database, task_id: str) -> None:
    """Remove a task and everything recorded on it (its blobs go at the next `labpipe gc`)."""
    db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))


# -- parameters ------------------------------------------------------------------------------


def set_params(
    db: Database, task_id: str, items: Iterable[tuple[str, str, str, str, str]], *, clear: bool = False, only_missing: bool = False
) -> None:
    """Write (section, name, value_json, type, description) parameters, in one transaction.

    clear: drop the old ones first (the new set replaces them all). only_missing: keep a parameter
    that is already there (`connect` adding the defaults a stored task lacks: a value someone set
    meanwhile wins). Each parameter is its own row, so processes setting different ones never lose
    each other's.
    """
    items = list(items)
    verb = "INSERT OR IGNORE" if only_missing else "INSERT OR REPLACE"

    def put(c: sqlite3.Connection) -> None:
        if clear:
            c.execute("DELETE FROM params WHERE task = ?", (task_id,))
        c.executemany(
            f"{verb} INTO params (task, section, name, value, type, description) VALUES (?, ?, ?, ?, ?, ?)",
            [(task_id, *p) for p in items],
        )

    write_for_task(db, task_id, put)


def write_for_task(db: Database, task_id: str, fn: Callable[[sqlite3.Connection], Any]) -> None:
    """Run `fn` as a write transaction (`Database.write`) that inserts rows naming `task_id` (its
    parameters, an artifact): the foreign key turns an unknown id into TaskNotFound naming it."""
    try:
        db.write(fn)
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" not in str(exc):
            raise
        raise TaskNotFound(f"no task with id {task_id!r} in the store {db.root}") from None


def get_params(db: Database, task_id: str) -> list[sqlite3.Row]:
    """The task's parameters as rows (section, name, value, type, description), ordered."""
    return db.query(
        "SELECT section, name, value, type, description FROM params WHERE task = ? ORDER BY section, name", (task_id,)
    )


def delete_params(db: Database, task_id: str, keys: Iterable[tuple[str, str]]) -> None:
    db.write(lambda c: c.executemany("DELETE FROM params WHERE task = ? AND section = ? AND name = ?", [(task_id, s, n) for s, n in keys]))


# -- queues ----------------------------------------------------------------------------------


def _queue_names(c: sqlite3.Connection) -> list[str]:
    return [r[0] for r in c.execute("SELECT name FROM queues ORDER BY name")]


def queue_exists(db: Database, name: str) -> bool:
    return db.query_one("SELECT 1 FROM queues WHERE name = ?", (name,)) is not None


def create_queue(db: Database, name: str) -> None:
    db.execute("INSERT OR IGNORE INTO queues(name, created) VALUES (?, ?)", (name, time.time()))


def queue_stats(db: Database) -> list[dict]:
    """Per queue: name, queued (depth), running (in_progress tasks that came from it)."""
    rows = db.query(
        "SELECT q.name, "
        "(SELECT count(*) FROM tasks WHERE status = 'queued' AND queue = q.name) AS queued, "
        "(SELECT count(*) FROM tasks WHERE status = 'in_progress' AND queue = q.name) AS running "
        "FROM queues q ORDER BY q.name"
    )
    return [dict(r) for r in rows]
