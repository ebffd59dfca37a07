"""Content-addressed bytes: the address of a blob is the xxh3-128 of its bytes.

Small blobs (config.INLINE_BLOB_MAX) live in the `inline_blobs` table and commit together with the
row that names them. Larger ones are files `blobs/ab/abcdef...`, written to a temp file in the same
folder, fsynced and renamed into place before the row that names them commits, so a crash leaves
either no blob or a whole one. Identical content is stored once. Bytes are verified against their
address on every read, before anyone unpickles them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import xxhash

from ..config import INLINE_BLOB_MAX
from ..errors import BlobCorrupted
from .db import Database

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


def prepare(db: Database, parts: Sequence) -> BlobRef:
    """Hash `parts` (bytes-like, concatenated) and make the blob durable unless it is small.

    Small blobs come back with their bytes, for the caller to insert with `insert_inline` inside the
    transaction that records what names them.
    """
    views = _buffers(parts)
    size = sum(v.nbytes for v in views)
    hasher = xxhash.xxh3_128()
    for v in views:
        hasher.update(v)
    digest = hasher.hexdigest()
    if size <= INLINE_BLOB_MAX:
        return BlobRef(digest, size, b"".join(views))
    _write_file(db, digest, views)
    return BlobRef(digest, size)


def prepare_file(db: Database, path: str | os.PathLike) -> BlobRef:
    """Like `prepare`, for a file's contents, streamed (never held in memory whole)."""
    size = os.path.getsize(path)
    if size <= INLINE_BLOB_MAX:
        with open(path, "rb") as fh:
            return prepare(db, [fh.read()])
    hasher = xxhash.xxh3_128()
    folder = db.blobs_dir
    folder.mkdir(exist_ok=True, mode=0o700)
    tmp = folder / f".tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            os.chmod(tmp, 0o600)
            writer = _ChunkWriter(dst.fileno())
            while chunk := src.read(_CHUNK):
                hasher.update(chunk)
                writer.write(memoryview(chunk))
            os.fsync(dst.fileno())
        digest = hasher.hexdigest()
        _place(db, digest, tmp)
    finally:
        if tmp.exists():
            tmp.unlink()
    return BlobRef(digest, size)


def _write_file(db: Database, digest: str, views: list[memoryview]) -> None:
    target = blob_path(db, digest)
    if target.exists():
        _touch(target)
        return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.parent / f".tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
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
    finally:
        if tmp.exists():
            tmp.unlink()


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


def _place(db: Database, digest: str, tmp: Path) -> None:
    target = blob_path(db, digest)
    if target.exists():
        _touch(target)
        return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.replace(tmp, target)


def _touch(path: Path) -> None:
    # A writer that finds its blob already present refreshes its mtime, so a concurrent `gc`
    # (which only deletes unreferenced blobs older than its grace period) leaves it alone.
    try:
        os.utime(path)
    except OSError:
        pass


def insert_inline(c: sqlite3.Connection, ref: BlobRef) -> None:
    """Inside a write transaction: store a small blob's bytes (once per content)."""
    if ref.inline is not None:
        c.execute("INSERT OR IGNORE INTO inline_blobs (hash, data, created) VALUES (?, ?, ?)", (ref.hash, ref.inline, time.time()))


def insert_inline_many(c: sqlite3.Connection, refs: Sequence[BlobRef]) -> None:
    """`insert_inline` for many blobs in one statement (a dataset's 10,000 small files)."""
    now = time.time()
    c.executemany("INSERT OR IGNORE INTO inline_blobs (hash, data, created) VALUES (?, ?, ?)",
                  [(r.hash, r.inline, now) for r in refs if r.inline is not None])


def read(db: Database, digest: str, *, what: str = "blob", inline: bytes | None = None):
    """The verified bytes of a blob (a bytes-like buffer). `what` names the owner (task/artifact) in errors.

    inline: the bytes of an inline blob when the caller already has them (a worker passes them to the
    task's process, which then needs no database connection of its own).

    A file blob is mapped copy-on-write rather than read into fresh memory: hashing it touches only
    the page cache, and a numpy array decoded from it shares those pages until someone writes to it.
    """
    if inline is not None:
        data = inline
    else:
        data = _map_file(blob_path(db, digest))
        if data is None:
            row = db.query_one("SELECT data FROM inline_blobs WHERE hash = ?", (digest,))
            if row is None:
                raise BlobCorrupted(f"{what}: its bytes (blob {digest}) are missing from {db.blobs_dir}; the artifact cannot be loaded")
            data = row[0]
    if xxhash.xxh3_128(data).hexdigest() != digest:
        raise BlobCorrupted(f"{what}: its bytes (blob {digest}) no longer match their hash; the stored copy is corrupted")
    return data


def _map_file(path: Path):
    """The file's bytes as a private (copy-on-write) memory map, or None if there is no such file."""
    import mmap

    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return b""
        return mmap.mmap(fh.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def exists(db: Database, digest: str) -> bool:
    if blob_path(db, digest).exists():
        return True
    return db.query_one("SELECT 1 FROM inline_blobs WHERE hash = ?", (digest,)) is not None
