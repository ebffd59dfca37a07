"""`labpipe gc`: delete blobs that no row names, safely while other processes write.

A writer makes its blob durable *before* committing the row that names it, so a blob with no row
may just be in flight. gc therefore deletes only unreferenced blobs older than a grace period, and
a writer that finds its blob already present refreshes its mtime. Only one gc runs at a time
(an exclusive lock file).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass

from ..errors import StoreError
from . import outputs
from .db import Database

DEFAULT_GRACE = 3600.0


@dataclass
class GcReport:
    deleted_files: int = 0
    deleted_inline: int = 0
    freed_bytes: int = 0
    kept: int = 0
    temp_files: int = 0


def collect(db: Database, grace: float = DEFAULT_GRACE) -> GcReport:
    """Delete unreferenced blobs older than `grace` seconds, and stale temp files."""
    report = GcReport()
    db.connection()  # opens (and validates) the store before we touch its folder
    lock_path = db.root / "gc.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another `labpipe gc` is running on {db.root}; wait for it to finish") from None
        cutoff = time.time() - grace
        referenced = outputs.referenced_hashes(db)
        for dirpath, _dirs, files in os.walk(db.blobs_dir):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if st.st_mtime >= cutoff:
                    report.kept += 1
                    continue
                if name.startswith(".tmp-"):
                    os.unlink(path)
                    report.temp_files += 1
                elif name not in referenced:
                    os.unlink(path)
                    report.deleted_files += 1
                    report.freed_bytes += st.st_size
                else:
                    report.kept += 1
        report.deleted_inline = outputs.delete_unreferenced_inline(db, cutoff)
    return report
