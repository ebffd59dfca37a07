"""Store verbs for datasets: a dataset is a task (its status is the dataset's state) plus a `datasets`
row (name, version, parents) and one `dataset_files` row per file it holds.

A child dataset starts with its parents' rows copied (`origin` keeps which dataset added each
version of a file), so listing or copying any version reads one dataset's rows; no bytes are copied,
the rows name the same blobs. Its own changes are the rows whose origin is itself, and what it
removed is what its parents hold and it does not.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import blobs
from .db import Database
from .tasks import TaskRow, create_task

DATASET_TAG = "dataset"


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: its path inside the dataset, its blob, size, permission bits, and the
    dataset that added this version of it."""

    path: str
    hash: str
    size: int
    mode: int
    origin: str


@dataclass(frozen=True)
class DatasetRow:
    id: str
    name: str
    project: str
    version: str
    parents: list[str]
    description: str
    created: float

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> DatasetRow:
        return cls(r["id"], r["name"], r["project"], r["version"], json.loads(r["parents"]), r["description"], r["created"])


def create_dataset(db: Database, *, name: str, project: str, version: str, parents: Sequence[str], description: str,
                   tags: Sequence[str], parent_task: str | None) -> TaskRow:
    """The dataset's task (type data_processing, system tag 'dataset'), its row, and its parents' files."""
    row = create_task(db, name=name, project=project, type="data_processing", comment=description, tags=list(tags),
                      system_tags=[DATASET_TAG], parent=parent_task)

    def put(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO datasets (id, name, project, version, parents, description, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (row.id, name, project, version, json.dumps(list(parents)), description, time.time()))
        for parent in parents:  # a later parent's version of a path wins, as in ClearML
            c.execute("INSERT OR REPLACE INTO dataset_files (dataset, path, hash, size, mode, origin) "
                      "SELECT ?, path, hash, size, mode, origin FROM dataset_files WHERE dataset = ?", (row.id, parent))

    db.write(put)
    return row


def get_dataset(db: Database, dataset_id: str) -> DatasetRow | None:
    r = db.query_one("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
    return DatasetRow.from_row(r) if r else None


def find_datasets(db: Database, *, project: str | None = None, name: str | None = None, version: str | None = None,
                  only_completed: bool = False, include_archived: bool = True) -> list[tuple[DatasetRow, str, bool]]:
    """(dataset, task status, archived) of the matching datasets, newest first."""
    sql = ("SELECT d.*, t.status AS task_status, t.archived AS task_archived FROM datasets d JOIN tasks t ON t.id = d.id "
           "WHERE 1 = 1")
    args: list = []
    for column, value in (("d.project", project), ("d.name", name), ("d.version", version)):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    if only_completed:
        sql += " AND t.status IN ('completed', 'published')"
    if not include_archived:
        sql += " AND t.archived = 0"
    sql += " ORDER BY d.created DESC"
    return [(DatasetRow.from_row(r), r["task_status"], bool(r["task_archived"])) for r in db.query(sql, tuple(args))]


def dataset_names(db: Database) -> list[tuple[str, str]]:
    """(project, name) of every dataset, to suggest close matches for a name that is not there."""
    return [(r[0], r[1]) for r in db.query("SELECT DISTINCT project, name FROM datasets")]


def files(db: Database, dataset_id: str) -> list[FileEntry]:
    rows = db.query("SELECT path, hash, size, mode, origin FROM dataset_files WHERE dataset = ? ORDER BY path", (dataset_id,))
    return [FileEntry(*r) for r in rows]


def put_files(db: Database, dataset_id: str, entries: Iterable[tuple[FileEntry, blobs.BlobRef]]) -> None:
    """Add or replace files in one transaction (their blobs are already durable, or inline here)."""
    entries = list(entries)

    def put(c: sqlite3.Connection) -> None:
        blobs.insert_inline_many(c, [ref for _, ref in entries])
        c.executemany("INSERT OR REPLACE INTO dataset_files (dataset, path, hash, size, mode, origin) VALUES (?, ?, ?, ?, ?, ?)",
                      [(dataset_id, e.path, e.hash, e.size, e.mode, e.origin) for e, _ in entries])

    db.write(put)


def remove_files(db: Database, dataset_id: str, paths: Iterable[str]) -> int:
    paths = [(dataset_id, p) for p in paths]

    def remove(c: sqlite3.Connection) -> int:
        c.executemany("DELETE FROM dataset_files WHERE dataset = ? AND path = ?", paths)
        return len(paths)

    return db.write(remove)


def inline_bytes(db: Database, hashes: Iterable[str]) -> dict[str, bytes]:
    """The bytes of those of `hashes` that are inline blobs, in one query per 500."""
    hashes = list(set(hashes))
    out: dict[str, bytes] = {}
    for start in range(0, len(hashes), 500):
        chunk = hashes[start:start + 500]
        marks = ",".join("?" * len(chunk))
        out.update({r[0]: r[1] for r in db.query(f"SELECT hash, data FROM inline_blobs WHERE hash IN ({marks})", tuple(chunk))})
    return out


def stats(db: Database, dataset_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """{dataset id: (file count, total bytes)}."""
    if not dataset_ids:
        return {}
    marks = ",".join("?" * len(dataset_ids))
    rows = db.query(f"SELECT dataset, count(*), coalesce(sum(size), 0) FROM dataset_files WHERE dataset IN ({marks}) GROUP BY dataset",
                    tuple(dataset_ids))
    return {r[0]: (r[1], r[2]) for r in rows}
