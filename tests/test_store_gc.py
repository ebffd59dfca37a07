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


def test_gc_refuses_a_grace_shorter_than_the_longest_write():
    import pytest

    for grace in (0, 1, 59.9, float("nan")):
        with pytest.raises(ValueError, match="too short"):
            gc.collect(get_database(), grace=grace)


def test_gc_lock_is_private_whatever_the_umask():
    db = get_database()
    old = os.umask(0o022)
    try:
        gc.collect(db)
    finally:
        os.umask(old)
    assert (db.root / "gc.lock").stat().st_mode & 0o777 == 0o600


def test_gc_keeps_an_old_unreferenced_blob_while_a_writer_holds_it():
    import fcntl

    db = get_database()
    t = Task.create(task_name="t")
    t.upload_artifact("a", np.arange(100_000))
    path = blobs.blob_path(db, t.artifacts["a"].hash)
    t.delete()
    old = time.time() - 7200
    os.utime(path, (old, old))
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a writer about to name it again, checking and refreshing it
    try:
        assert gc.collect(db).deleted_files == 0 and path.exists()
    finally:
        os.close(fd)
    assert gc.collect(db).deleted_files == 1 and not path.exists()


def test_gc_frees_space_on_a_full_disk(tmp_path, monkeypatch):
    import subprocess
    import sys

    import pytest
    import small_disk

    import labpipe

    mount = tmp_path / "small"
    try:
        disk = small_disk.mounted(mount, 3 << 20)
        disk.__enter__()
    except small_disk.Unavailable as exc:
        pytest.skip(str(exc))
    try:
        store = mount / "store"
        monkeypatch.setenv("LABPIPE_STORE", str(store))
        labpipe.set_store(store)
        db = get_database()
        t = Task.create(task_name="old")
        t.upload_artifact("a", np.arange(100_000))
        t.upload_artifact("small", list(range(100)))
        path = blobs.blob_path(db, t.artifacts["a"].hash)
        t.delete()
        old = time.time() - 7200
        os.utime(path, (old, old))
        db.execute("UPDATE inline_blobs SET created = ?", (old,))
        db.close()
        small_disk.fill(mount)
        with pytest.raises(Exception, match="full"):  # SQLite itself cannot write now
            Task.create(task_name="new")
        db.close()
        # a fresh process, as a user would run it, on the full disk
        done = subprocess.run([sys.executable, "-c", "from labpipe.cli import main; main()", "gc", "--json"],
                              capture_output=True, text=True, timeout=60, env=dict(os.environ, LABPIPE_STORE=str(store)))
        assert done.returncode == 0, done.stderr
        import json

        report = json.loads(done.stdout)
        assert report["deleted_files"] == 1 and report["freed_bytes"] > 700_000 and not path.exists()
        assert report["deleted_inline"] == 1  # the files freed room for SQLite's delete
        Task.create(task_name="after")  # the store writes again
    finally:
        get_database().close()
        disk.__exit__(None, None, None)
