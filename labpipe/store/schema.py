"""The store's tables, its schema version, and the migrations between versions.

The version lives in SQLite's `PRAGMA user_version`. Opening an older store runs the migrations in
order inside one transaction; opening a store written by a newer labpipe is refused, because an
older labpipe cannot know what the newer columns mean.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 3

# Queued tasks are the rows with status 'queued': the queue, priority and enqueue order are columns
# of the task, and a partial index over exactly those rows makes dequeue one indexed UPDATE.
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    project        TEXT NOT NULL DEFAULT '',
    type           TEXT NOT NULL DEFAULT 'training',
    status         TEXT NOT NULL DEFAULT 'created',
    status_message TEXT NOT NULL DEFAULT '',
    parent         TEXT,
    comment        TEXT NOT NULL DEFAULT '',
    script         TEXT NOT NULL DEFAULT '{}',
    runtime        TEXT NOT NULL DEFAULT '{}',
    queue          TEXT,
    priority       INTEGER NOT NULL DEFAULT 0,
    enqueue_seq    INTEGER,
    worker         TEXT,
    attempt        INTEGER NOT NULL DEFAULT 0,
    lease_until    REAL,
    lease_seconds  REAL,
    lease_beat     INTEGER NOT NULL DEFAULT 0,
    lease_mono     REAL,
    owner_proc     TEXT,
    lost_runs      INTEGER NOT NULL DEFAULT 0,
    retries_left   INTEGER NOT NULL DEFAULT 0,
    cache_key      TEXT,
    tags           TEXT NOT NULL DEFAULT '[]',
    system_tags    TEXT NOT NULL DEFAULT '[]',
    archived       INTEGER NOT NULL DEFAULT 0,
    created        REAL NOT NULL,
    started        REAL,
    completed      REAL,
    last_update    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_project_status ON tasks(project, status, created);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks(name, created);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status, created);
CREATE INDEX IF NOT EXISTS tasks_cache ON tasks(cache_key, status, archived, completed) WHERE cache_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_queued ON tasks(queue, priority DESC, enqueue_seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS tasks_running ON tasks(lease_until) WHERE status = 'in_progress';
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks(parent) WHERE parent IS NOT NULL;

CREATE TABLE IF NOT EXISTS params (
    task        TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    section     TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    type        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (task, section, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queues (
    name    TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS seq (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS workers (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    queues    TEXT NOT NULL,
    host      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    proc      TEXT,
    task      TEXT,
    started   REAL NOT NULL,
    last_seen REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS artifacts (
    task     TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    name     TEXT NOT NULL,
    hash     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    filename TEXT NOT NULL DEFAULT '',
    preview  TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    created  REAL NOT NULL,
    PRIMARY KEY (task, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_hash ON artifacts(hash);

CREATE TABLE IF NOT EXISTS models (
    id        TEXT PRIMARY KEY,
    task      TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    framework TEXT NOT NULL DEFAULT '',
    hash      TEXT,
    size      INTEGER NOT NULL DEFAULT 0,
    filename  TEXT NOT NULL DEFAULT '',
    tags      TEXT NOT NULL DEFAULT '[]',
    metadata  TEXT NOT NULL DEFAULT '{}',
    created   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS models_task ON models(task, name, created);
CREATE INDEX IF NOT EXISTS models_hash ON models(hash);

-- Blobs small enough to live inside the database (config.INLINE_BLOB_MAX); larger ones are files.
CREATE TABLE IF NOT EXISTS inline_blobs (
    hash    TEXT PRIMARY KEY,
    data    BLOB NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS scalars (
    task      TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    title     TEXT NOT NULL,
    series    TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    value     REAL,
    reported  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS scalars_task ON scalars(task, title, series, iteration);

CREATE TABLE IF NOT EXISTS plots (
    task      TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    title     TEXT NOT NULL,
    series    TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    hash      TEXT NOT NULL,
    reported  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS plots_task ON plots(task, title, series, iteration);
CREATE INDEX IF NOT EXISTS plots_hash ON plots(hash);

CREATE TABLE IF NOT EXISTS console (
    task     TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    reported REAL NOT NULL,
    stream   TEXT NOT NULL,
    text     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_task ON console(task, seq);

CREATE TABLE IF NOT EXISTS pipeline_nodes (
    pipeline  TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    parents   TEXT NOT NULL DEFAULT '[]',
    task      TEXT,
    status    TEXT NOT NULL,
    kind      TEXT NOT NULL DEFAULT 'function',
    queue     TEXT,
    started   REAL,
    completed REAL,
    error     TEXT,
    stage     TEXT,
    extra     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (pipeline, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pipeline_nodes_task ON pipeline_nodes(task);


INSERT OR IGNORE INTO queues(name, created) VALUES ('default', (julianday('now') - 2440587.5) * 86400.0),
                                          ('services', (julianday('now') - 2440587.5) * 86400.0);
"""

DATASETS_DDL = """-- Datasets (ClearML Data): the task with the same id holds status, tags and project; a child
-- starts with its parents' file rows, `origin` naming the dataset that added each file's version.
CREATE TABLE IF NOT EXISTS datasets (
    id          TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    project     TEXT NOT NULL,
    version     TEXT NOT NULL,
    parents     TEXT NOT NULL DEFAULT '[]',
    description TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_name ON datasets(project, name, created);
CREATE TABLE IF NOT EXISTS dataset_files (
    dataset TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    path    TEXT NOT NULL,
    hash    TEXT NOT NULL,
    size    INTEGER NOT NULL,
    mode    INTEGER NOT NULL,
    origin  TEXT NOT NULL,
    PRIMARY KEY (dataset, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dataset_files_hash ON dataset_files(hash);
"""


def _v2_lease_heartbeats(db) -> None:
    """Leases judged without comparing wall clocks (store/leases.py): each renewal bumps `lease_beat`,
    which observers watch on their own monotonic clock for `lease_seconds`, and records `lease_mono`,
    the owner's time.monotonic(), which observers on the same machine compare with theirs; `owner_proc`
    (and the workers' `proc`) is the owner's process identity (store/owners.py) for same-host liveness
    checks; `lost_runs` counts runs whose worker died, so a task that keeps killing workers is failed.
    The columns come out declared as SCHEMA declares them for a new store (REAL, INTEGER NOT NULL
    DEFAULT 0, TEXT): a migrated store and a new one have the same table."""
    tasks = db["tasks"]
    tasks.add_column("lease_seconds", float)
    tasks.add_column("lease_beat", int, not_null_default=0)
    tasks.add_column("lease_mono", float)
    tasks.add_column("owner_proc", str)
    tasks.add_column("lost_runs", int, not_null_default=0)
    db["workers"].add_column("proc", str)


def _v3_datasets(db) -> None:
    """Version 3: the datasets and dataset_files tables (ClearML Data), from the DDL a new store runs
    (`table.create` cannot declare WITHOUT ROWID or ON DELETE CASCADE, which these tables use)."""
    for statement in _statements(DATASETS_DDL):
        db.execute(statement)


#: target version -> function that brings a store from version-1 up to it. Each receives a
#: `sqlite_utils.Database` over the open connection (its `add_column` and `transform` handle SQLite's
#: limited ALTER TABLE: `transform` rebuilds a table to rename, drop or retype a column, which ALTER
#: cannot) and runs inside the migration transaction, so a migration that fails changes nothing.
MIGRATIONS: dict[int, Callable] = {2: _v2_lease_heartbeats, 3: _v3_datasets}


def create_or_migrate(conn: sqlite3.Connection, found: int) -> None:
    """Bring a store at schema version `found` (0 = empty file) up to SCHEMA_VERSION.

    Called inside a BEGIN IMMEDIATE transaction, so two processes opening a new store at once do
    not both create it.
    """
    if found == 0:
        for statement in _statements(SCHEMA) + _statements(DATASETS_DDL):
            conn.execute(statement)
    else:
        import sqlite_utils  # 0.45 s to import: only migrations need it, never a new store or the hot path

        # No PRAGMA recursive_triggers and no plugins' prepare_connection hooks on our connection: it
        # lives on after the migration, and nothing but the migration should change it.
        db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements (executescript would commit our open transaction)."""
    out, buf = [], []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        buf.append(line)
        if sqlite3.complete_statement("\n".join(buf)):
            out.append("\n".join(buf))
            buf = []
    return out
