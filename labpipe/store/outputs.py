"""Store verbs for what tasks produce: artifacts, models, scalars, plots, console lines."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable

from ..errors import StoreFull, TaskNotFound
from . import blobs, tasks
from .db import Database


def _require_task(c: sqlite3.Connection, db: Database, task_id: str) -> None:
    if c.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone() is None:
        raise TaskNotFound(f"no task with id {task_id!r} in the store {db.root}")


# -- artifacts -------------------------------------------------------------------------------


def put_artifact(
    db: Database, task_id: str, name: str, ref: blobs.BlobRef, *, kind: str, filename: str = "", preview: str = "", metadata: dict | None = None
) -> None:
    """Record (or replace) artifact `name` of a task, pointing at a prepared blob, in one transaction."""
    def put(c: sqlite3.Connection) -> None:
        blobs.insert_inline(c, ref)
        c.execute(
            "INSERT OR REPLACE INTO artifacts (task, name, hash, size, kind, filename, preview, metadata, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task_id, name, ref.hash, ref.size, kind, filename, preview, json.dumps(metadata or {}), time.time()),
        )

    try:
        tasks.write_for_task(db, task_id, put)
    except StoreFull as exc:  # the blob is whole (gc takes it); the row could not be written
        raise StoreFull(f"artifact {name!r} of task {task_id}: {exc}") from None


def get_artifacts(db: Database, task_id: str) -> list[sqlite3.Row]:
    return db.query("SELECT * FROM artifacts WHERE task = ? ORDER BY created, name", (task_id,))


def get_artifact(db: Database, task_id: str, name: str) -> sqlite3.Row | None:
    return db.query_one("SELECT * FROM artifacts WHERE task = ? AND name = ?", (task_id, name))


def content_named(db: Database, digest: str) -> tuple[str, str] | None:
    """(kind, filename) of an artifact or, failing that, a model whose bytes are blob `digest` (what a
    labpipe:// url names), or None when neither has them. A model recorded from a folder has kind
    'folder' (its filename ends with '/', removed here); any other model is a 'file'."""
    row = db.query_one("SELECT kind, filename FROM artifacts WHERE hash = ? LIMIT 1", (digest,))
    if row is not None:
        return row["kind"], row["filename"]
    model = db.query_one("SELECT filename FROM models WHERE hash = ? LIMIT 1", (digest,))
    if model is None:
        return None
    return ("folder" if model["filename"].endswith("/") else "file"), model["filename"].rstrip("/")


def delete_artifact(db: Database, task_id: str, name: str) -> bool:
    return db.execute("DELETE FROM artifacts WHERE task = ? AND name = ?", (task_id, name)) == 1


def copy_artifact(db: Database, src_task: str, src_name: str, dst_task: str, dst_name: str) -> bool:
    """Record the same bytes under another task (monitor_artifacts): no data is copied."""
    def copy(c: sqlite3.Connection) -> bool:
        _require_task(c, db, dst_task)
        return c.execute(
            "INSERT OR REPLACE INTO artifacts (task, name, hash, size, kind, filename, preview, metadata, created) "
            "SELECT ?, ?, hash, size, kind, filename, preview, metadata, ? FROM artifacts WHERE task = ? AND name = ?",
            (dst_task, dst_name, time.time(), src_task, src_name),
        ).rowcount == 1

    return db.write(copy)


# -- models ----------------------------------------------------------------------------------


def put_model(
    db: Database, task_id: str, name: str, ref: blobs.BlobRef | None, *, framework: str = "", filename: str = "",
    tags: Iterable[str] = (), metadata: dict | None = None, model_id: str | None = None,
) -> str:
    """Record an output model of a task (its weights file as a blob); returns the model id."""
    mid = model_id or uuid.uuid4().hex

    def put(c: sqlite3.Connection) -> None:
        _require_task(c, db, task_id)
        if ref is not None:
            blobs.insert_inline(c, ref)
        c.execute(
            "INSERT OR REPLACE INTO models (id, task, name, framework, hash, size, filename, tags, metadata, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (mid, task_id, name, framework, ref.hash if ref else None, ref.size if ref else 0, filename,
             json.dumps(list(tags)), json.dumps(metadata or {}), time.time()),
        )

    db.write(put)
    return mid


def get_models(db: Database, task_id: str) -> list[sqlite3.Row]:
    return db.query("SELECT * FROM models WHERE task = ? ORDER BY created, rowid", (task_id,))


def get_model(db: Database, model_id: str) -> sqlite3.Row | None:
    return db.query_one("SELECT * FROM models WHERE id = ?", (model_id,))


def find_models(db: Database, *, project: str | None = None, name: str | None = None, include_archived: bool = False) -> list[sqlite3.Row]:
    """Models (newest first) of tasks in `project`, named `name`; those of archived tasks only if asked."""
    sql = "SELECT m.* FROM models m JOIN tasks t ON t.id = m.task WHERE 1 = 1"
    args: list = []
    if project is not None:
        sql += " AND t.project = ?"
        args.append(project)
    if name is not None:
        sql += " AND m.name = ?"
        args.append(name)
    if not include_archived:
        sql += " AND t.archived = 0"
    return db.query(sql + " ORDER BY m.created DESC, m.rowid DESC", tuple(args))


def update_model_metadata(db: Database, model_id: str, changes: dict) -> dict:
    """Merge `changes` into a model's metadata in one transaction (read under the write lock: no lost
    update); returns the new metadata."""
    def change(c: sqlite3.Connection) -> dict:
        row = c.execute("SELECT metadata FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise TaskNotFound(f"no model with id {model_id!r} in the store {db.root}")
        metadata = {**json.loads(row[0]), **changes}
        c.execute("UPDATE models SET metadata = ? WHERE id = ?", (json.dumps(metadata), model_id))
        return metadata

    return db.write(change)


def rename_model(db: Database, model_id: str, name: str) -> None:
    db.execute("UPDATE models SET name = ? WHERE id = ?", (name, model_id))


# -- metrics ---------------------------------------------------------------------------------


def add_scalars(db: Database, task_id: str, rows: Iterable[tuple[str, str, int, float]]) -> None:
    """Append (title, series, iteration, value) scalar reports."""
    now = time.time()
    rows = [(task_id, t, s, int(i), v, now) for t, s, i, v in rows]
    db.write(lambda c: c.executemany(
        "INSERT INTO scalars (task, title, series, iteration, value, reported) VALUES (?, ?, ?, ?, ?, ?)", rows
    ))


def get_scalars(db: Database, task_id: str) -> list[sqlite3.Row]:
    return db.query(
        "SELECT title, series, iteration, value FROM scalars WHERE task = ? ORDER BY title, series, iteration, rowid", (task_id,)
    )


def last_scalars(db: Database, task_id: str) -> list[sqlite3.Row]:
    """Per (title, series): last value (highest iteration, latest report), min and max."""
    return db.query(
        "SELECT title, series, "
        "(SELECT value FROM scalars s2 WHERE s2.task = s.task AND s2.title = s.title AND s2.series = s.series "
        " ORDER BY iteration DESC, rowid DESC LIMIT 1) AS last, min(value) AS min, max(value) AS max, max(iteration) AS iteration "
        "FROM scalars s WHERE task = ? GROUP BY title, series ORDER BY title, series",
        (task_id,),
    )


def add_plot(db: Database, task_id: str, title: str, series: str, iteration: int, kind: str, ref: blobs.BlobRef) -> None:
    """Record a plot (PNG image or table) whose bytes are a blob."""
    def put(c: sqlite3.Connection) -> None:
        _require_task(c, db, task_id)
        blobs.insert_inline(c, ref)
        c.execute(
            "INSERT INTO plots (task, title, series, iteration, kind, hash, reported) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task_id, title, series, int(iteration), kind, ref.hash, time.time()),
        )

    db.write(put)


def get_plots(db: Database, task_id: str) -> list[sqlite3.Row]:
    return db.query("SELECT * FROM plots WHERE task = ? ORDER BY rowid", (task_id,))


# -- console ---------------------------------------------------------------------------------


def add_console(db: Database, task_id: str, stream: str, text: str) -> None:
    if text:
        db.execute("INSERT INTO console (task, reported, stream, text) VALUES (?, ?, ?, ?)", (task_id, time.time(), stream, text))


def read_console(db: Database, task_id: str, after: int = 0) -> list[sqlite3.Row]:
    """Console chunks of a task after sequence number `after` (to follow a running task)."""
    return db.query("SELECT seq, reported, stream, text FROM console WHERE task = ? AND seq > ? ORDER BY seq", (task_id, after))


# -- garbage collection ----------------------------------------------------------------------


_REFERENCED = ("SELECT hash FROM artifacts UNION SELECT hash FROM models WHERE hash IS NOT NULL UNION SELECT hash FROM plots "
               "UNION SELECT hash FROM dataset_files")


def referenced_hashes(db: Database) -> set[str]:
    return {r[0] for r in db.query(_REFERENCED)}


def referenced_hashes_frozen(db: Database) -> set[str] | None:
    """The same, read from the database file alone, without opening it for writing (SQLite's
    `immutable` mode: no WAL index is made, so it works on a full disk). Only sound when the WAL holds
    nothing (no process has the store open): None otherwise."""
    import os
    import sqlite3

    wal = f"{db.path}-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        return None
    conn = sqlite3.connect(f"{db.path.as_uri()}?immutable=1", uri=True)
    try:
        return {r[0] for r in conn.execute(_REFERENCED)}
    finally:
        conn.close()


def delete_unreferenced_inline(db: Database, older_than: float) -> int:
    return db.execute(
        f"DELETE FROM inline_blobs WHERE created < ? AND hash NOT IN ({_REFERENCED})",
        (older_than,),
    )


def shrink_log(db: Database) -> None:
    """Checkpoint the WAL and truncate it, so the space a large delete took in it is given back."""
    db.query("PRAGMA wal_checkpoint(TRUNCATE)")
