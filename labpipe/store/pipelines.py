"""Store verbs for pipeline runs: their DAG nodes, and the step cache lookup."""

from __future__ import annotations

import json
import sqlite3
from typing import NamedTuple

from .db import Database
from .records import TaskRow

_NODE_FIELDS = ("seq", "parents", "task", "status", "kind", "queue", "started", "completed", "error", "stage", "extra")


def save_nodes(db: Database, pipeline_id: str, nodes: list[dict]) -> None:
    """Insert or update DAG nodes of a pipeline run (dicts with name + _NODE_FIELDS; lists/dicts as JSON)."""
    rows = [
        (pipeline_id, n["name"], n["seq"], json.dumps(n["parents"]), n.get("task"), n["status"], n.get("kind", "function"),
         n.get("queue"), n.get("started"), n.get("completed"), n.get("error"), n.get("stage"), json.dumps(n.get("extra") or {}))
        for n in nodes
    ]
    db.write(lambda c: c.executemany(
        "INSERT OR REPLACE INTO pipeline_nodes (pipeline, name, seq, parents, task, status, kind, queue, started, completed, "
        "error, stage, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    ))


def load_nodes(db: Database, pipeline_id: str) -> list[dict]:
    """The nodes of a pipeline run in the order they were added (parents/extra decoded)."""
    rows = db.query("SELECT * FROM pipeline_nodes WHERE pipeline = ? ORDER BY seq", (pipeline_id,))
    return [dict(r, parents=json.loads(r["parents"]), extra=json.loads(r["extra"])) for r in rows]


def node_counts(db: Database, pipeline_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per pipeline run: {status: count} of its nodes."""
    if not pipeline_ids:
        return {}
    rows = db.query(
        f"SELECT pipeline, status, count(*) AS n FROM pipeline_nodes WHERE pipeline IN ({', '.join('?' * len(pipeline_ids))}) "
        "GROUP BY pipeline, status",
        tuple(pipeline_ids),
    )
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["pipeline"], {})[r["status"]] = r["n"]
    return out


def step_names(db: Database, task_ids: list[str]) -> dict[str, str]:
    """{task id: its step's name in the pipeline run that made it} (`slow_1`, `slow_2` for a repeated
    component, as the DAG names them), for the tasks in `task_ids` that are pipeline steps."""
    if not task_ids:
        return {}
    rows = db.query(
        "SELECT n.task, n.name FROM pipeline_nodes n JOIN tasks t ON t.id = n.task AND t.parent = n.pipeline "
        f"WHERE n.task IN ({', '.join('?' * len(task_ids))})",
        tuple(task_ids),
    )
    return {r["task"]: r["name"] for r in rows}


class CacheHit(NamedTuple):
    """The task an identical earlier call left: its id, when it ran, and its artifacts' content hashes."""

    task_id: str
    started: float | None
    completed: float | None
    hashes: dict[str, str]


def find_cached_outputs(db: Database, cache_key: str, names: list[str] | None = None) -> CacheHit | None:
    """A cache hit and its artifacts' hashes in one query: the newest completed (or published) task
    with this key, unless it is archived, that has every artifact in `names` (default: all it has)
    with its bytes still present.

    Archiving the task a step reused makes the next run execute that step, even when an older
    completed task with the same key exists (a refresh leaves one behind): the newest one speaks.
    A hit whose outputs no longer load (artifact row or blob gone, or a blob file of the wrong size,
    which is quarantined) is a miss, not an error. Only the columns a hit needs are read: a cached
    rerun makes one of these queries per step.
    """
    row = db.query_one(
        "SELECT t.id, t.started, t.completed, t.archived, "
        "(SELECT json_group_object(a.name, a.hash) FROM artifacts a WHERE a.task = t.id) AS outputs, "
        "(SELECT count(*) FROM artifacts a JOIN inline_blobs b ON b.hash = a.hash WHERE a.task = t.id) AS inline_count "
        "FROM tasks t WHERE t.cache_key = ? AND t.status IN ('completed', 'published') "
        "ORDER BY t.completed DESC LIMIT 1",
        (cache_key,),
    )
    if row is None or row["archived"]:
        return None
    hashes = json.loads(row["outputs"] or "{}")
    wanted = hashes if names is None else {n: hashes.get(n) for n in names}
    if any(h is None for h in wanted.values()):
        return None
    if row["inline_count"] < len(hashes):  # some outputs are files: check those are there, whole
        from . import blobs

        # a stat each (size as recorded), not a hash: a hit must stay cheap. A flipped byte is found
        # when the bytes are read (blobs.read quarantines them; the pipeline then runs the step again).
        files = db.query(
            "SELECT a.name, a.hash, a.size FROM artifacts a WHERE a.task = ? "
            "AND NOT EXISTS (SELECT 1 FROM inline_blobs b WHERE b.hash = a.hash)",
            (row["id"],),
        )
        if not all(blobs.present(db, f["hash"], f["size"]) for f in files if f["name"] in wanted):
            return None
    return CacheHit(row["id"], row["started"], row["completed"], hashes)


def task_statuses(db: Database, task_ids: list[str]) -> dict[str, sqlite3.Row]:
    """id -> (status, status_message, started, completed, attempt) for many tasks in one query."""
    if not task_ids:
        return {}
    rows = db.query(
        f"SELECT id, status, status_message, started, completed, attempt, retries_left FROM tasks "
        f"WHERE id IN ({', '.join('?' * len(task_ids))})",
        tuple(task_ids),
    )
    return {r["id"]: r for r in rows}


def last_version(db: Database, project: str, name: str) -> str | None:
    """The version of the newest run of pipeline `name` in `project` that has one (None if there is none)."""
    row = db.query_one(
        "SELECT json_extract(runtime, '$.pipeline_version') FROM tasks WHERE type = 'controller' AND project = ? "
        "AND json_extract(runtime, '$.pipeline_name') = ? AND json_extract(runtime, '$.pipeline_version') IS NOT NULL "
        "ORDER BY created DESC LIMIT 1",
        (project, name),
    )
    return row[0] if row else None
