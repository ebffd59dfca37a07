"""`labpipe gc`: delete blobs that no row names, safely while other processes write, and on a full disk.

A writer makes its blob durable *before* committing the row that names it, so a blob with no row
may just be in flight. gc therefore deletes only unreferenced blobs older than a grace period, and
a writer that reuses a blob already present refreshes its mtime. The two meet on a lock on the blob
file itself (`blobs.delete_unused`): gc checks the mtime and unlinks under an exclusive lock, a writer
refreshes under a shared one and writes the blob again if it is gone, so a refresh can never land on a
file that gc is deleting.

The grace period must outlast the longest time from a blob being made durable to its row committing:
a worker's child writes the blob, the worker commits the row, and the commit may wait up to the
store's busy timeout (10 s) for the write lock. A grace under `MIN_GRACE` is refused.

On a full disk SQLite cannot write (not even a DELETE: the WAL must grow), so blob files are deleted
first, with no SQLite write before them; the inline rows go after, once the files freed room, and the
WAL is then checkpointed and truncated so it gives its space back.

Only one gc runs at a time (an exclusive lock on `<store>/gc.lock`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError, StoreFull
from . import blobs, outputs
from .db import Database

log = logging.getLogger("labpipe")

DEFAULT_GRACE = 3600.0
#: the shortest grace accepted: well over the longest blob-to-row span (busy timeout 10 s, plus fsyncs)
MIN_GRACE = 60.0


@dataclass
class GcReport:
    deleted_files: int = 0
    deleted_inline: int = 0
    freed_bytes: int = 0
    kept: int = 0
    temp_files: int = 0
    #: inline rows could not be deleted (the disk stayed full after the files went); 0 or 1
    inline_skipped: int = 0


def check_grace(grace: float) -> None:
    """Refuse a grace period too short to be safe (ValueError naming the minimum and why)."""
    if not grace >= MIN_GRACE:
        raise ValueError(
            f"a gc grace of {grace:g} s is too short: a blob is written before the row that names it commits, "
            f"and that can take up to the store's busy timeout, so a shorter grace could delete a blob that a row "
            f"is about to name; use --grace {MIN_GRACE:g} or more (default {DEFAULT_GRACE:g})"
        )


def collect(db: Database, grace: float = DEFAULT_GRACE) -> GcReport:
    """Delete unreferenced blobs older than `grace` seconds (at least MIN_GRACE), and stale temp files."""
    check_grace(grace)
    report = GcReport()
    try:
        db.connection()  # opens (and validates) the store before we touch its folder
        full = False
    except StoreFull:  # SQLite cannot open it for writing: read what the rows name from the file itself
        full = True
    with _exclusive(db.root / "gc.lock"):
        cutoff = time.time() - grace
        referenced = outputs.referenced_hashes_frozen(db) if full else outputs.referenced_hashes(db)
        if referenced is None:
            raise StoreFull(
                f"the disk holding the store {db.root} is full, and another process has it open, so gc cannot "
                "read which blobs are in use; stop the processes using the store (or free a little space) and run it again"
            )
        for dirpath, _dirs, files in os.walk(db.blobs_dir):
            for name in files:
                if name in referenced:
                    report.kept += 1
                    continue
                freed = blobs.delete_unused(db, Path(dirpath) / name, cutoff)
                if freed is None:
                    report.kept += 1
                elif name.startswith(".tmp-"):
                    report.temp_files += 1
                else:
                    report.deleted_files += 1
                    report.freed_bytes += freed
        try:
            report.deleted_inline = outputs.delete_unreferenced_inline(db, cutoff)
        except StoreFull:
            # the files are gone and their space is free; the rows wait for a run with room
            log.warning("gc: the disk holding %s is still full; unreferenced inline blobs were left for the next gc", db.root)
            report.inline_skipped = 1
        else:
            if report.deleted_inline:
                outputs.shrink_log(db)
    return report


class _exclusive:
    """Hold `<store>/gc.lock` exclusively (one gc at a time); the file is 0600 whatever the umask."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(self.fd, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise StoreError(f"another `labpipe gc` is running on {self.path.parent}; wait for it to finish") from None
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
