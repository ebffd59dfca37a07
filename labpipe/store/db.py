"""The SQLite file: opening it safely, one connection per process, short retried write transactions.

Why the rules here:
- WAL + synchronous=NORMAL: readers never block the writer, and a commit costs microseconds; a
  power cut can lose the last commits but never corrupts the file.
- One connection per process, re-opened when `os.getpid()` changes: a connection inherited through
  fork shares SQLite's locks and file descriptors with the parent, which corrupts databases.
- Every write starts with BEGIN IMMEDIATE: a deferred transaction that reads and then writes cannot
  wait for the write lock (SQLite returns SQLITE_BUSY at once to avoid deadlock), which under
  contention fails a quarter of transactions even with a busy timeout.
- Transactions are retried whole, with jittered backoff, if SQLITE_BUSY still escapes.
- WAL needs shared memory between processes, which network filesystems do not provide, so a store
  there is refused up front rather than corrupted later.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreError, StoreFull, StoreTooNew
from . import schema

T = TypeVar("T")
log = logging.getLogger(__name__)

DB_NAME = "labpipe.db"
BLOBS_DIR = "blobs"
BUSY_TIMEOUT_MS = 10_000
# Waiting for another process's write lock: SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms
# between looks, though our transactions hold the lock for ~0.1 ms; measured with 2 workers and a
# producer, 5% of writes slept >= 1 ms that way (0.6 s in all over 1,000 tasks). So connections run
# with busy_timeout 0 once open, and we look again after a short jittered sleep that doubles from
# _FIRST_WAIT up to _MAX_WAIT, until BUSY_TIMEOUT_MS has passed.
_FIRST_WAIT = 50e-6
_MAX_WAIT = 0.005

# Filesystem types on which SQLite's WAL mode is unsafe (no shared memory / unreliable locks).
NETWORK_FS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "sshfs", "fuse.sshfs", "9p", "afs",
        "glusterfs", "fuse.glusterfs", "ceph", "fuse.ceph", "lustre", "davfs", "fuse.s3fs",
        "fuse.rclone", "fuse.gcsfuse", "gpfs", "beegfs", "virtiofs", "fuse.juicefs",
    }
)


MOUNTS_FILE = "/proc/mounts"


def filesystem_type(path: str | os.PathLike, mounts_file: str | None = None) -> str | None:
    """The filesystem type holding `path`, from the mount table (None where it cannot be told)."""
    target = os.path.realpath(path)
    best, best_type = "", None
    try:
        with open(mounts_file or MOUNTS_FILE, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, best_type = mount, fields[2]
    except OSError:
        return None
    return best_type


def _check_folder(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise StoreError(
            f"the labpipe store path {root} is a file, not a folder; point LABPIPE_STORE (or "
            "labpipe.set_store) at a folder, or remove that file"
        )
    try:
        _make_private_folders(root)
        (root / BLOBS_DIR).mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreError(f"cannot create the labpipe store folder {root}: {exc.strerror}; choose a writable folder") from None
    for folder in (root, root / BLOBS_DIR):
        _tighten(folder)
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreError(f"the labpipe store folder {root} is not writable by this user; choose a writable folder")
    fstype = filesystem_type(root)
    if fstype in NETWORK_FS and not os.environ.get("LABPIPE_ALLOW_NETWORK_FS"):
        raise StoreError(
            f"the labpipe store {root} is on a network filesystem ({fstype}); SQLite's WAL mode needs "
            "shared memory and local file locks, which network filesystems do not provide, so the "
            "database would be corrupted. Put the store on a local disk (LABPIPE_STORE=/local/path)"
        )


def _make_private_folders(root: Path) -> None:
    """`root` and any missing folders above it, each made 0700 whatever the umask (pathlib's
    `mkdir(parents=True)` would make the ones above with the umask's mode)."""
    missing = []
    path = root
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # another process made it meanwhile
            continue
        os.chmod(path, 0o700)


_warned: set[str] = set()


def _tighten(folder: Path) -> None:
    """Warn about a store folder that others may read, and make it 0700 if it is ours.

    A store holds the user's data and code (pickles that are loaded, scripts that are run), so
    others must neither read nor write it. A folder that someone else owns is only warned about.
    """
    try:
        st = os.stat(folder)
    except OSError:
        return
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if not loose:
        return
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == os.getuid():
        try:
            os.chmod(folder, mode & 0o700)
        except OSError:
            pass
        else:
            log.warning("the labpipe store folder %s could be read by others (mode %04o); made it %04o (owner only)",
                        folder, mode, mode & 0o700)
            return
    if str(folder) not in _warned:
        _warned.add(str(folder))
        log.warning("the labpipe store folder %s can be read by others (mode %04o) and is not this user's to change; "
                    "its owner should run `chmod 700 %s`", folder, mode, folder)


class Database:
    """One store's SQLite file and blob folder, with a lazily opened per-process connection.

    root: the store folder; `labpipe.db` and `blobs/` live inside it.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        self.path = self.root / DB_NAME
        self.blobs_dir = self.root / BLOBS_DIR
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.RLock()

    # -- connection -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema checked) on first use."""
        if self._conn is None or self._pid != os.getpid():
            with self._lock:  # opening calls into SQLite too: never while another thread forks
                if self._conn is None or self._pid != os.getpid():
                    # A connection inherited through fork is dropped, never closed or used: closing
                    # it would release locks the parent still holds.
                    self._conn = None
                    self._conn = self._open()
                    self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        _check_folder(self.root)
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path} is not a file; the labpipe store needs it to be its SQLite database")
        if not self.path.exists():
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise StoreError(f"cannot create {self.path}: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if disk_full(self.root):  # SQLite cannot even make its WAL index: not a bad database
                raise StoreFull(f"cannot open the store {self.path} ({exc}): the disk holding it is full ({_free(self.path)}); "
                                "free space (`labpipe gc` works on a full disk) and retry") from None
            raise StoreError(
                f"{self.path} is not a labpipe store database ({exc}); move it away or point "
                "LABPIPE_STORE at another folder"
            ) from None
        if mode.lower() != "wal":
            raise StoreError(f"cannot switch {self.path} to WAL mode (got {mode!r}); is the folder on a local disk?")
        if version > schema.SCHEMA_VERSION:
            conn.close()
            raise self._too_new(version)
        if version < schema.SCHEMA_VERSION:
            self._run(conn, lambda c: _create(c))
        conn.execute("PRAGMA busy_timeout = 0")  # from now on we wait for locks ourselves (see _FIRST_WAIT)
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(str(self.path) + suffix, 0o600)
            except OSError:
                pass
        return conn

    def _too_new(self, version: int) -> StoreTooNew:
        return StoreTooNew(
            f"the store at {self.root} was upgraded to schema {version} by a newer labpipe; this process runs "
            f"schema {schema.SCHEMA_VERSION}, so it stops writing there: upgrade labpipe (pip install -U labpipe) "
            "and restart this process"
        )

    def close(self) -> None:
        """Close this process's connection (the next use reopens it)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    # -- transactions -----------------------------------------------------------------------

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in one BEGIN IMMEDIATE transaction, retried whole on SQLITE_BUSY.

        `fn` must be short and free of side effects outside the database (it may run twice).
        """
        return self._run(self.connection(), fn)

    def _run(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        def transaction() -> T:
            try:
                conn.execute("BEGIN IMMEDIATE")
                # A newer labpipe may have migrated the store since this process opened it. Read
                # while holding the write lock, which every migration takes too, the version is
                # authoritative: nothing of this process is written into a schema it does not know.
                # (~1 µs: user_version sits in the database header, which BEGIN IMMEDIATE has read.)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > schema.SCHEMA_VERSION:
                    raise self._too_new(version)
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return self._retrying(transaction)

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Rows of one read-only statement (WAL readers see the last committed state; one is kept
        waiting only rarely, while another process recovers the WAL)."""
        conn = self.connection()
        return self._retrying(lambda: conn.execute(sql, params).fetchall())

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """`attempt()` under this process's lock, tried again while the database is busy (see _Backoff)."""
        waited: _Backoff | None = None  # made only when the database is busy: most calls never are
        while True:
            with self._lock:
                try:
                    return attempt()
                except sqlite3.OperationalError as exc:
                    if not _busy(exc):
                        raise self._failure(exc) from None
                    busy = exc
            waited = waited or _Backoff(self.path)
            waited.sleep(busy)  # outside the lock: this process's other threads may go on meanwhile

    def _failure(self, exc: sqlite3.Error) -> StoreError:
        """The error to raise for a failed statement: StoreTooNew when a newer labpipe has migrated the
        store meanwhile (a read naming a column that migration renamed fails so), else a StoreError."""
        try:
            version = self.connection().execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error:
            version = 0
        return self._too_new(version) if version > schema.SCHEMA_VERSION else _store_error(exc, self.path)

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: tuple | dict = ()) -> Any:
        """One write statement in its own transaction; returns the cursor's rowcount."""
        return self.write(lambda c: c.execute(sql, params).rowcount)


def _create(conn: sqlite3.Connection) -> None:
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found < schema.SCHEMA_VERSION:  # another process may have done it while we waited
        schema.create_or_migrate(conn, found)


class _Backoff:
    """Jittered, doubling sleeps between looks at a busy database, up to BUSY_TIMEOUT_MS in all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.delay = _FIRST_WAIT
        self.deadline: float | None = None

    def sleep(self, exc: sqlite3.OperationalError) -> None:
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + BUSY_TIMEOUT_MS / 1000
        elif now >= self.deadline:
            raise _store_error(exc, self.path) from None
        time.sleep(self.delay * (0.5 + random.random()))
        self.delay = min(self.delay * 2, _MAX_WAIT)


def require_store(store: str | os.PathLike | None = None) -> Database:
    """The store's Database, refusing a store that is not there yet.

    For what only looks at or changes what a store holds (most `labpipe` commands): opening a store
    creates it, so a typo in the path would otherwise show an empty new store. `labpipe agent` (which
    starts things) and running a pipeline create the store.
    """
    db = get_database(store)  # opens nothing yet: only says which folder would be opened
    if not db.path.is_file():
        raise StoreError(
            f"no labpipe store at {db.root} (LABPIPE_STORE / --store); run a pipeline or `labpipe agent` there "
            "first, or check the path"
        )
    return db


def check_store(root: str | os.PathLike | None = None) -> None:
    """Open the store at `root` afresh and check that it can be served; StoreError says what is wrong.

    What `labpipe agent` does before it starts anything, and a pool when its workers die before they
    serve: a path that is a file, an unwritable folder, a network filesystem, a file that is not a
    SQLite database or is truncated (SQLite finds the header's page count past the end of the file),
    a newer schema. A new store is created, as opening one does. A few ms whatever the store's size.
    """
    cached = get_database(root)
    db = Database(cached.root)  # a connection of its own: the cached one may predate the damage
    with cached._lock:  # held across fork() by the at-fork hooks: no fork while this is inside SQLite
        try:
            db.connection().execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{db.path} cannot be read ({exc}); restore it from a backup or move it away") from None
        finally:
            db.close()


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    if _busy(exc):
        return StoreError(f"{path} stayed locked by another process for too long ({exc}); retry, or look for a hung labpipe process")
    if "full" in str(exc).lower():  # SQLITE_FULL: the disk (or quota) is full
        return StoreFull(f"store operation failed on {path}: {exc} ({_free(path)}); free space (`labpipe gc` works on a full disk) and retry")
    return StoreError(f"store operation failed on {path}: {exc}")


def disk_full(folder: Path) -> bool:
    """Whether the filesystem holding `folder` has too little room left for SQLite to open or write."""
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def _free(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path.parent).free:,d} bytes free"
    except OSError:
        return "free space unknown"


_databases: dict[str, Database] = {}
_registry_lock = threading.Lock()


# Forking while another thread is inside SQLite copies SQLite's mutexes in their locked state, and the
# child then hangs in its first sqlite3 call (seen: pool workers forked while pipeline threads wrote).
# Every SQLite call of ours runs under its Database's lock, so holding all of them across fork() means
# no thread of ours is inside SQLite at that moment. The child gets fresh locks (and reconnects).
def _before_fork() -> None:
    _registry_lock.acquire()
    for key in sorted(_databases):
        _databases[key]._lock.acquire()


def _after_fork_in_parent() -> None:
    for key in sorted(_databases, reverse=True):
        _databases[key]._lock.release()
    _registry_lock.release()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for db in _databases.values():
        db._lock = threading.RLock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def forget_database(root: str | os.PathLike) -> None:
    """Close this process's connection to the store at `root` and forget it (the next use opens it
    afresh). For a process done with a store it will not use again: each kept store holds three
    open files (the database, its WAL and its shared memory)."""
    key = os.fspath(root)
    with _registry_lock:
        db = _databases.pop(key, None)
    if db is not None:
        with db._lock:
            db.close()


def get_database(root: str | os.PathLike | None = None) -> Database:
    """The Database for `root` (default: the configured store), one object per folder per process."""
    if root is None:
        from .. import config

        # the hot path: every Task call asks, so key on the configured string before building a Path
        key = config.store_key()
        key = key if os.path.isabs(key) else os.path.join(os.getcwd(), key)
    else:
        key = os.fspath(root)
    db = _databases.get(key)
    if db is None:
        with _registry_lock:
            db = _databases.get(key)
            if db is None:
                db = _databases[key] = Database(Path(key).expanduser().absolute())
    return db
