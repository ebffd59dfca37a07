"""`labpipe fsck`: verify every blob and every row that names one, and repair what can be repaired.

Checks, in this order:
- every blob file (`blobs/ab/<hash>`): its bytes hash to its name. A corrupt one is quarantined
  (moved to `<store>/quarantine/`, see `blobs.quarantine`), so it is never served and a pipeline that
  needs it runs the step again;
- every inline blob row: the same, quarantined as its row removed and its bytes saved aside;
- stale temp files (`.tmp-*` in `blobs/`, left by a killed writer) older than `TEMP_AGE`: removed;
- every row that names a blob (artifacts, models, plots, dataset files): the blob is there, of the size recorded.
  A row whose blob is missing (or was just quarantined) cannot be repaired here: the bytes are gone.
  It is reported by task and name; a pipeline step that produced it runs again on its next use;
- materialized copies under `<store>/cache/<hash>/` of a blob that is gone: removed (they are made
  again from the blob, and must not outlive it).

Safe while other processes run: it changes blob files only under the same file locks as gc and the
writers, and leaves young temp files alone (they may be in flight).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import xxhash

from . import blobs
from .db import Database

#: temp files older than this are left over by a killed writer (a live one writes for seconds at most)
TEMP_AGE = 3600.0


@dataclass
class Problem:
    """One thing found wrong: what kind, where (table, task, name), which blob, and what became of it."""

    kind: str  # corrupt_blob | missing_blob | size_mismatch
    hash: str
    detail: str
    repaired: bool
    table: str = ""
    task: str = ""
    name: str = ""


@dataclass
class FsckReport:
    file_blobs: int = 0
    inline_blobs: int = 0
    rows: int = 0
    corrupt: int = 0
    quarantined: int = 0
    missing: int = 0
    temp_files_removed: int = 0
    cache_copies_removed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """Problems that are still there after the repairs (a non-zero exit status)."""
        return sum(1 for p in self.problems if not p.repaired)

    def as_dict(self) -> dict:
        return {**asdict(self), "remaining": self.remaining, "ok": self.remaining == 0}


def check(db: Database, *, repair: bool = True) -> FsckReport:
    """Verify the store's blobs and the rows that name them; with `repair`, quarantine corrupt blobs,
    remove stale temp files and orphaned cache copies."""
    report = FsckReport()
    db.connection()
    gone: set[str] = set()
    _check_files(db, report, gone, repair)
    _check_inline(db, report, gone, repair)
    _check_rows(db, report, gone)
    if repair:
        _drop_cache_copies(db, report, gone)
    return report


def _check_files(db: Database, report: FsckReport, gone: set[str], repair: bool) -> None:
    old = time.time() - TEMP_AGE
    for dirpath, _dirs, files in os.walk(db.blobs_dir):
        for name in sorted(files):
            path = Path(dirpath) / name
            if name.startswith(".tmp-"):
                if repair and blobs.delete_unused(db, path, old) is not None:
                    report.temp_files_removed += 1
                continue
            report.file_blobs += 1
            if _file_hash(path) in (name, None):  # intact, or removed meanwhile (gc)
                continue
            _corrupt(db, report, gone, repair, name, f"blob file {path} does not match its hash", "moved to")


def _file_hash(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            hasher = xxhash.xxh3_128()
            while chunk := fh.read(8 << 20):
                hasher.update(chunk)
    except FileNotFoundError:
        return None
    return hasher.hexdigest()


def _corrupt(db: Database, report: FsckReport, gone: set[str], repair: bool, digest: str, detail: str,
             moved_to: str) -> None:
    """Count and record a blob whose bytes do not match its hash; with `repair`, quarantine it."""
    report.corrupt += 1
    moved = blobs.quarantine(db, digest) if repair else None
    if moved is not None:
        report.quarantined += 1
        gone.add(digest)
    report.problems.append(Problem("corrupt_blob", digest, detail + (f"; {moved_to} {moved}" if moved else ""),
                                   repaired=moved is not None))


def _check_inline(db: Database, report: FsckReport, gone: set[str], repair: bool) -> None:
    last = ""
    while True:  # in pages, so a big store is never held in memory at once
        rows = db.query("SELECT hash, data FROM inline_blobs WHERE hash > ? ORDER BY hash LIMIT 500", (last,))
        if not rows:
            return
        for digest, data in rows:
            report.inline_blobs += 1
            if xxhash.xxh3_128(data).hexdigest() == digest:
                continue
            _corrupt(db, report, gone, repair, digest, "inline blob does not match its hash", "its bytes were saved to")
        last = rows[-1][0]


_ROW_KIND = {"artifacts": "artifact", "models": "model", "plots": "plot", "dataset_files": "file"}


def _check_rows(db: Database, report: FsckReport, gone: set[str]) -> None:
    inline = {r[0]: r[1] for r in db.query("SELECT hash, length(data) FROM inline_blobs")}
    rows = db.query(
        "SELECT 'artifacts' AS tbl, a.task, a.name, a.hash, a.size, t.name AS task_name FROM artifacts a "
        "LEFT JOIN tasks t ON t.id = a.task "
        "UNION ALL SELECT 'models', m.task, m.name, m.hash, m.size, t.name FROM models m LEFT JOIN tasks t ON t.id = m.task "
        "WHERE m.hash IS NOT NULL "
        "UNION ALL SELECT 'plots', p.task, p.title || '/' || p.series, p.hash, NULL, t.name FROM plots p "
        "LEFT JOIN tasks t ON t.id = p.task "
        "UNION ALL SELECT 'dataset_files', d.dataset, d.path, d.hash, d.size, t.name FROM dataset_files d "
        "LEFT JOIN tasks t ON t.id = d.dataset"
    )
    for tbl, task, name, digest, size, task_name in rows:
        report.rows += 1
        what = f"{_ROW_KIND[tbl]} {name!r} of {'dataset' if tbl == 'dataset_files' else 'task'} {task} ({task_name or 'deleted'})"
        if digest in inline:
            found = inline[digest]
        else:
            try:
                found = blobs.blob_path(db, digest).stat().st_size
            except FileNotFoundError:
                found = None
        if found is None:
            report.missing += 1
            why = "was quarantined (corrupt)" if digest in gone else "is missing"
            report.problems.append(Problem("missing_blob", digest, f"{what}: its blob {digest} {why}; run the step "
                                           "that made it again (a pipeline does so by itself)", repaired=False,
                                           table=tbl, task=task, name=name))
        elif size is not None and size and found != size:
            report.problems.append(Problem("size_mismatch", digest, f"{what}: its blob {digest} has {found:,d} bytes, "
                                           f"the row says {size:,d}", repaired=False, table=tbl, task=task, name=name))


def _drop_cache_copies(db: Database, report: FsckReport, gone: set[str]) -> None:
    cache = db.root / "cache"
    if not cache.is_dir():
        return
    for entry in cache.iterdir():
        if entry.name in gone or (entry.is_dir() and not blobs.exists(db, entry.name) and len(entry.name) == 32):
            shutil.rmtree(entry, ignore_errors=True)
            report.cache_copies_removed += 1
