"""Content-addressed bytes: the address of a blob is the xxh3-128 of its bytes.

Small blobs (config.INLINE_BLOB_MAX) live in the `inline_blobs` table and commit together with the
row that names them. Larger ones are files `blobs/ab/abcdef...`, written to a temp file in the same
folder, fsynced and renamed into place (then the folder fsynced) before the row that names them
commits, so a crash or a power cut leaves either no blob or a whole one. Identical content is stored
once. Bytes are verified against their address on every read, before anyone unpickles them; a blob
that fails is moved to `<store>/quarantine/` (never served again, so the cache sees a miss).

A blob file is changed in place only under an advisory lock on the file itself (flock): a writer
that reuses an existing file holds it shared while it checks and refreshes the file; gc and
quarantine hold it exclusive while they remove it, and then only if the path still names that
same file. So a writer never refreshes a file that gc is deleting.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import xxhash

from ..config import INLINE_BLOB_MAX
from ..errors import BlobCorrupted, StoreFull
from .db import Database

log = logging.getLogger("labpipe")
_EMPTY = xxhash.xxh3_128(b"").hexdigest()

QUARANTINE_DIR = "quarantine"
_FULL = (errno.ENOSPC, errno.EDQUOT)
_CHUNK = 8 * 1024 * 1024
_PAGE = 4096


@dataclass(frozen=True)
class BlobRef:
    """A blob ready to be named by a row: its address, size, and its bytes if it is inline."""

    hash: str
    size: int
    inline: bytes | None = None


def _buffers(parts: Sequence) -> list[memoryview]:
    return [memoryview(p).cast("B") if not isinstance(p, bytes) else memoryview(p) for p in parts]


def blob_path(db: Database, digest: str) -> Path:
    """Where the file for a (non-inline) blob lives."""
    return db.blobs_dir / digest[:2] / digest


def prepare(db: Database, parts: Sequence, *, what: str = "blob") -> BlobRef:
    """Hash `parts` (bytes-like, concatenated) and make the blob durable unless it is small.

    Small blobs come back with their bytes, for the caller to insert with `insert_inline` inside the
    transaction that records what names them. what: names the owner (task/artifact) in errors.
    Raises StoreFull (nothing left behind) when the disk is full.
    """
    views = _buffers(parts)
    size = sum(v.nbytes for v in views)
    hasher = xxhash.xxh3_128()
    for v in views:
        hasher.update(v)
    digest = hasher.hexdigest()
    if size <= INLINE_BLOB_MAX:
        return BlobRef(digest, size, b"".join(views))
    _write_file(db, digest, views, size, what)
    return BlobRef(digest, size)


def prepare_file(db: Database, path: str | os.PathLike, *, what: str = "blob") -> BlobRef:
    """Like `prepare`, for a file's contents, streamed (never held in memory whole)."""
    size = os.path.getsize(path)
    if size <= INLINE_BLOB_MAX:
        with open(path, "rb") as fh:
            return prepare(db, [fh.read()], what=what)
    hasher = xxhash.xxh3_128()
    folder = db.blobs_dir
    folder.mkdir(exist_ok=True, mode=0o700)
    with _temporary(db, folder, what, size) as tmp:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            os.chmod(tmp, 0o600)
            writer = _ChunkWriter(dst.fileno())
            while chunk := src.read(_CHUNK):
                hasher.update(chunk)
                writer.write(memoryview(chunk))
            os.fsync(dst.fileno())
        digest = hasher.hexdigest()
        if not _refresh_existing(db, digest, size):
            target = blob_path(db, digest)
            created = _make_folder(db, target.parent)
            os.replace(tmp, target)
            _landed(db, target, created)
    return BlobRef(digest, size)


def _write_file(db: Database, digest: str, views: list[memoryview], size: int, what: str) -> None:
    if _refresh_existing(db, digest, size):
        return
    target = blob_path(db, digest)
    with _temporary(db, target.parent, what, size) as tmp:
        created = _make_folder(db, target.parent)
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        try:
            writer = _ChunkWriter(fd)
            for v in views:
                for start in range(0, v.nbytes, _CHUNK):
                    writer.write(v[start:start + _CHUNK])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _landed(db, target, created)


@contextlib.contextmanager
def _temporary(db: Database, folder: Path, what: str, size: int) -> Iterator[Path]:
    """A temporary file's path in `folder` for a blob being written: removed unless it was moved into
    place, and a full disk raised as StoreFull naming `what` (nothing left behind)."""
    tmp = folder / f".tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        yield tmp
    except OSError as exc:
        if exc.errno in _FULL:
            raise _store_full(db, what, size, exc) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _store_full(db: Database, what: str, size: int, exc: OSError) -> StoreFull:
    try:
        free = f"{shutil.disk_usage(db.root).free:,d} bytes free"
    except OSError:
        free = "free space unknown"
    reason = "the disk is full" if exc.errno == errno.ENOSPC else "the disk quota is exceeded"
    return StoreFull(
        f"{what}: cannot store its {size:,d} bytes in the store {db.root}: {reason} ({free}); nothing was "
        "written. Free space (`labpipe gc` deletes unreferenced blobs, also on a full disk) and run it again"
    )


def _make_folder(db: Database, folder: Path) -> bool:
    """Create a blob's two-level folder (`blobs/ab/`) if needed; True if it was just created."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        return False
    except FileNotFoundError:  # blobs/ itself was removed: make it again
        db.blobs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _make_folder(db, folder)
    return True


def _landed(db: Database, target: Path, created: bool) -> None:
    """After the rename into place: make the new directory entry durable (the row naming the blob is
    about to commit, and a power cut must not lose the file it names), and the folder's own entry in
    `blobs/` when the folder is new. Inside `landing()`, once per folder when the block ends."""
    folders = [target.parent, db.blobs_dir] if created else [target.parent]
    pending = _landing.get()
    if pending is not None:
        pending.update(folders)
        return
    for folder in folders:
        fsync_folder(folder)


_landing: contextvars.ContextVar[set[Path] | None] = contextvars.ContextVar("labpipe_blob_landing", default=None)


@contextlib.contextmanager
def landing() -> Iterator[None]:
    """Blobs made durable inside this block have their folders fsynced when it ends, once per folder,
    instead of once per blob: for code that stores many blobs before one commit names them all (a
    dataset's files land in at most 257 folders). Commit the rows after the block, never inside it.
    """
    folders: set[Path] = set()
    token = _landing.set(folders)
    try:
        yield
    finally:
        _landing.reset(token)
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        fsync_folder(folder)


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Locks taken on blob files belong to the open file, which a fork shares with the child: a lock held
# by one thread while another forks (the pool forks workers from a pipeline's process) would stay held
# as long as the child lives. So every fd we lock is registered, a fork waits while one is being
# opened, and the child closes its copies at once (the parent's close then releases the lock).
_held: set[int] = set()
_held_lock = threading.Lock()


def _open_for_lock(path: Path) -> int:
    with _held_lock:
        fd = os.open(path, os.O_RDONLY)
        _held.add(fd)
    return fd


def _close_locked(fd: int) -> None:
    with _held_lock:
        _held.discard(fd)
        os.close(fd)


def _after_fork_in_child() -> None:
    global _held_lock
    for fd in _held:
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()
    _held_lock = threading.Lock()


os.register_at_fork(before=lambda: _held_lock.acquire(), after_in_parent=lambda: _held_lock.release(),
                    after_in_child=_after_fork_in_child)


def _flock_exclusive(fd: int, wait: float) -> bool:
    """An exclusive lock within `wait` seconds (writers hold theirs for the time of a hash at most)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)


def _refresh_existing(db: Database, digest: str, size: int) -> bool:
    """True if an intact file for this blob is in place, its mtime now refreshed; False if the caller
    must write it (no file, or a damaged one, which is moved to quarantine here).

    Under a shared lock on the file: gc cannot delete it meanwhile, and if gc (or a quarantine) removed
    it just before, the path no longer names the file we opened, and we write it again. The bytes are
    checked (size, then hash) because a writer holding the right bytes is the one chance to heal a
    damaged copy; the existing file's hash costs less than writing and syncing it would.
    """
    target = blob_path(db, digest)
    try:
        fd = _open_for_lock(target)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.fstat(fd)
        if not _names(target, st):
            return False
        if st.st_size != size or _hash_fd(fd, st.st_size) != digest:
            log.warning("blob %s in %s is damaged (%d bytes, expected %d); replacing it with the bytes just written",
                        digest, db.blobs_dir, st.st_size, size)
            _move_aside(db, target, digest)
            return False
        # the mtime is what gc's grace period reads: this blob is in use again
        os.utime(fd)
        return True
    finally:
        _close_locked(fd)


def _names(path: Path, st: os.stat_result) -> bool:
    """Whether `path` still names the file whose (open) status is `st`."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _hash_fd(fd: int, size: int) -> str:
    import mmap

    if size == 0:
        return _EMPTY
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
        return xxhash.xxh3_128(m).hexdigest()


def _move_aside(db: Database, path: Path, digest: str) -> Path | None:
    """Rename a damaged blob file into the quarantine folder (None if it was gone already)."""
    folder = db.root / QUARANTINE_DIR
    folder.mkdir(exist_ok=True, mode=0o700)
    dest = folder / f"{digest}.{time.time_ns()}"
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None
    return dest


def quarantine(db: Database, digest: str, *, seen: os.stat_result | None = None) -> Path | None:
    """Move a blob that failed its hash out of the store's blobs (file: into `<store>/quarantine/`;
    inline: its row, with its bytes saved there), so it is never served again and the cache misses.

    seen: the status of the file found corrupt; it is moved only if the path still names that file
    (a writer may have put good bytes in its place meanwhile). Returns where it went, or None.
    """
    path = blob_path(db, digest)
    try:
        fd = _open_for_lock(path)
    except FileNotFoundError:
        return _quarantine_inline(db, digest)
    try:
        if not _flock_exclusive(fd, 5.0):  # never served anyway; fsck moves it later
            log.warning("blob %s failed its hash but stays in place for now: another process holds it", digest)
            return None
        st = os.fstat(fd)
        if not _names(path, st) or (seen is not None and (seen.st_dev, seen.st_ino) != (st.st_dev, st.st_ino)):
            return None
        if _hash_fd(fd, st.st_size) == digest:
            return None  # intact now: someone replaced it
        dest = _move_aside(db, path, digest)
    finally:
        _close_locked(fd)
    log.warning("blob %s failed its hash; moved to %s", digest, dest)
    return dest


def _quarantine_inline(db: Database, digest: str) -> Path | None:
    row = db.query_one("SELECT data FROM inline_blobs WHERE hash = ?", (digest,))
    if row is None or xxhash.xxh3_128(row[0]).hexdigest() == digest:
        return None
    folder = db.root / QUARANTINE_DIR
    folder.mkdir(exist_ok=True, mode=0o700)
    dest = folder / f"{digest}.{time.time_ns()}.inline"
    fd = os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(row[0])
    db.execute("DELETE FROM inline_blobs WHERE hash = ? AND data = ?", (digest, row[0]))
    log.warning("inline blob %s failed its hash; its row was removed and its bytes saved to %s", digest, dest)
    return dest


def delete_unused(db: Database, path: Path, older_than: float) -> int | None:
    """gc's delete: unlink a blob (or temp) file if its mtime is before `older_than` and no writer is
    refreshing it; returns the bytes freed, or None if it was kept. The caller has checked that no row
    names it. A file that a writer holds (shared lock) is kept: that writer is about to name it.
    """
    try:
        fd = _open_for_lock(path)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        st = os.fstat(fd)
        if st.st_mtime >= older_than or not _names(path, st):
            return None
        os.unlink(path)
        return st.st_size
    finally:
        _close_locked(fd)


class _ChunkWriter:
    """Appends bytes to a new blob file, starting each chunk's writeback as soon as it is written.

    How the bytes are handed to the kernel matters on this VM. Given a large write, Linux (6.x,
    ext4) caches the file in large folios; when no recently freed memory can back them they come
    from memory the host has reclaimed, and copying into them runs at ~0.4 GB/s (measured: 100 MB
    into a new file took 0.23-0.26 s in 8 MB writes). Page-sized writes get single pages, which
    stay fast (a steady 0.06 s for the same 100 MB, durable), but cost more when large folios are
    to be had (~0.025 s). So each large write is timed, and once one runs slower than page-sized
    writes would, the rest of the blob goes page by page.
    """

    #: below this rate (bytes/s) a large write has met reclaimed memory: switch to page-sized writes
    SLOW = 1.0e9
    PROBE = 1 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0
        self.paged = False
        self.probed = False

    def write(self, chunk: memoryview) -> None:
        size, pos = chunk.nbytes, 0
        while pos < size and not self.paged:
            # the first large write is a short probe, so a slow one costs little
            piece = chunk[pos:pos + (size if self.probed else self.PROBE)]
            t0 = time.perf_counter()
            _write_all(self.fd, piece)
            if piece.nbytes >= self.PROBE:
                self.probed = True
                self.paged = piece.nbytes / max(time.perf_counter() - t0, 1e-9) < self.SLOW
            pos += piece.nbytes
        write = os.write
        for start in range(pos, size, _PAGE):
            piece = chunk[start:start + _PAGE]
            written = write(self.fd, piece)
            if written < piece.nbytes:  # a short write (never seen for a regular file): finish the rest
                _write_all(self.fd, piece[written:])
        # start writing this chunk back to disk now, while the next one is copied: the final fsync
        # then waits for far less
        _start_writeback(self.fd, self.offset, size)
        self.offset += size


def _write_all(fd: int, data: memoryview) -> None:
    written = 0
    while written < data.nbytes:
        written += os.write(fd, data[written:])


_sync_file_range = None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): begin writeback without waiting (no-op elsewhere)."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            func = libc.sync_file_range
            func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            _sync_file_range = func
        except (OSError, AttributeError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, 2)


def insert_inline(c: sqlite3.Connection, ref: BlobRef) -> None:
    """Inside a write transaction: store a small blob's bytes (once per content).

    A row already there with other bytes (damaged) is overwritten with these, which match the hash.
    """
    if ref.inline is not None:
        c.execute(
            "INSERT INTO inline_blobs (hash, data, created) VALUES (?, ?, ?) "
            "ON CONFLICT (hash) DO UPDATE SET data = excluded.data WHERE data IS NOT excluded.data",
            (ref.hash, ref.inline, time.time()),
        )


def insert_inline_many(c: sqlite3.Connection, refs: Sequence[BlobRef]) -> None:
    """`insert_inline` for many blobs in one statement (a dataset's 10,000 small files)."""
    now = time.time()
    c.executemany("INSERT INTO inline_blobs (hash, data, created) VALUES (?, ?, ?) "
                  "ON CONFLICT (hash) DO UPDATE SET data = excluded.data WHERE data IS NOT excluded.data",
                  [(r.hash, r.inline, now) for r in refs if r.inline is not None])


def inline_bytes(db: Database, digest: str) -> bytes | None:
    """The stored bytes of inline blob `digest`, unverified, or None when it is not an inline blob
    (a file blob, or missing). For a caller that hands them on to `read(inline=...)` elsewhere."""
    row = db.query_one("SELECT data FROM inline_blobs WHERE hash = ?", (digest,))
    return None if row is None else row[0]


def read(db: Database, digest: str, *, what: str = "blob", inline: bytes | None = None):
    """The verified bytes of a blob (a bytes-like buffer). `what` names the owner (task/artifact) in errors.

    inline: the bytes of an inline blob when the caller already has them (a worker passes them to the
    task's process, which then needs no database connection of its own).

    A file blob is mapped copy-on-write rather than read into fresh memory: hashing it touches only
    the page cache, and a numpy array decoded from it shares those pages until someone writes to it.
    Bytes that fail their hash are quarantined (see `quarantine`) before BlobCorrupted is raised, so
    they are never served, and the next cache lookup is a miss.
    """
    seen = None
    if inline is not None:
        data = inline
    else:
        found = _map_file(blob_path(db, digest))
        if found is None:
            data = inline_bytes(db, digest)
            if data is None:
                raise BlobCorrupted(f"{what}: its bytes (blob {digest}) are missing from {db.blobs_dir}; the artifact cannot be loaded")
        else:
            data, seen = found
    if xxhash.xxh3_128(data).hexdigest() != digest:
        if inline is None:  # bytes handed in by a caller are the caller's to judge
            quarantine(db, digest, seen=seen)
        raise BlobCorrupted(
            f"{what}: its bytes (blob {digest}) no longer match their hash; the stored copy is corrupted and "
            f"was moved to {db.root / QUARANTINE_DIR}. Run the step that made it again (a pipeline does so by itself)"
        )
    return data


def verify(db: Database, digest: str) -> bool:
    """Whether the blob is present and intact (read and hashed); a damaged one is quarantined."""
    try:
        read(db, digest)
    except BlobCorrupted:
        return False
    return True


def present(db: Database, digest: str, size: int) -> bool:
    """Cheap check for a cache hit: the blob's file is there with the size its row records (one stat).
    A file of the wrong size is quarantined. The hash itself is verified when the bytes are read."""
    path = blob_path(db, digest)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if st.st_size != size:
        quarantine(db, digest, seen=st)
        return False
    return True


def _map_file(path: Path):
    """(The file's bytes as a private (copy-on-write) memory map, its status), or None if there is no such file."""
    import mmap

    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    with fh:
        st = os.fstat(fh.fileno())
        if st.st_size == 0:
            return b"", st
        return mmap.mmap(fh.fileno(), st.st_size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE), st


def exists(db: Database, digest: str) -> bool:
    if blob_path(db, digest).exists():
        return True
    return db.query_one("SELECT 1 FROM inline_blobs WHERE hash = ?", (digest,)) is not None
