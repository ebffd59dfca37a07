"""`gc`: only unreferenced blobs older than the grace period go."""

from __future__ import annotations

import os
import time

import numpy as np

from labpipe import Task
from labpipe.store import blobs, gc
from labpipe.store.db import get_database


def test_gc_deletes_only_unreferenced_old_blobs():
    db = get_database()
    keep, drop = Task.create(task_name="keep"), Task.create(task_name="drop")
    keep.upload_artifact("a", np.arange(100_000))
    drop.upload_artifact("b", np.arange(100_001))
    drop.upload_artifact("small", [1, 2, 3])
    kept_path = blobs.blob_path(db, keep.artifacts["a"].hash)
    dropped_path = blobs.blob_path(db, drop.artifacts["b"].hash)
    drop.delete()
    fresh = gc.collect(db, grace=3600)
    assert fresh.deleted_files == 0 and dropped_path.exists()  # too young: may be in flight
    old = time.time() - 7200
    for p in (kept_path, dropped_path):
        os.utime(p, (old, old))
    db.execute("UPDATE inline_blobs SET created = ?", (old,))
    report = gc.collect(db, grace=3600)
    assert report.deleted_files == 1 and report.deleted_inline == 1
    assert kept_path.exists() and not dropped_path.exists()
    np.testing.assert_array_equal(keep.artifacts["a"].get(), np.arange(100_000))


def test_rewriting_an_existing_blob_refreshes_it_so_gc_keeps_it():
    db = get_database()
    t = Task.create(task_name="t")
    t.upload_artifact("a", np.arange(100_000))
    path = blobs.blob_path(db, t.artifacts["a"].hash)
    old = time.time() - 7200
    os.utime(path, (old, old))
    other = Task.create(task_name="o")
    other.upload_artifact("same", np.arange(100_000))
    assert path.stat().st_mtime > old + 3600
