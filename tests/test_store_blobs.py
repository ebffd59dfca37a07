"""Blobs: damaged copies are healed or quarantined, folders are fsynced, a full disk is one clear error,
and a writer never refreshes a blob that gc is deleting."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import numpy as np
import pytest
import small_disk

import labpipe
from labpipe import Task
from labpipe.errors import BlobCorrupted, StoreFull
from labpipe.store import blobs
from labpipe.store.db import get_database

BIG = bytes(range(256)) * 1024  # 256 KiB: a file blob


def _flip(path, at=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x55
    path.write_bytes(bytes(data))


def test_identical_bytes_replace_a_damaged_file_of_the_same_size():
    db = get_database()
    ref = blobs.prepare(db, [BIG])
    path = blobs.blob_path(db, ref.hash)
    _flip(path)
    again = blobs.prepare(db, [BIG])
    assert again == ref and bytes(blobs.read(db, ref.hash)) == BIG
    assert len(list((db.root / "quarantine").iterdir())) == 1  # the damaged copy, kept aside


def test_identical_bytes_replace_a_truncated_file(tmp_path):
    db = get_database()
    ref = blobs.prepare(db, [BIG])
    path = blobs.blob_path(db, ref.hash)
    path.write_bytes(BIG[:1000])
    src = tmp_path / "big.bin"
    src.write_bytes(BIG)
    assert blobs.prepare_file(db, src) == ref  # the streamed path heals too
    assert bytes(blobs.read(db, ref.hash)) == BIG


def test_identical_bytes_replace_a_damaged_inline_row():
    db = get_database()
    t = Task.create(task_name="t")
    t.upload_artifact("small", {"k": 1})
    db.execute("UPDATE inline_blobs SET data = ?", (b"garbage",))
    Task.create(task_name="u").upload_artifact("same", {"k": 1})
    assert t.artifacts["small"].get() == {"k": 1}


def test_a_file_of_the_wrong_size_is_not_present_and_is_quarantined():
    db = get_database()
    ref = blobs.prepare(db, [BIG])
    path = blobs.blob_path(db, ref.hash)
    assert blobs.present(db, ref.hash, ref.size)
    with open(path, "ab") as fh:
        fh.write(b"x")
    assert not blobs.present(db, ref.hash, ref.size)
    assert not path.exists() and list((db.root / "quarantine").iterdir())


def test_a_corrupt_read_is_never_served_again():
    db = get_database()
    ref = blobs.prepare(db, [BIG])
    _flip(blobs.blob_path(db, ref.hash))
    for _ in range(2):
        with pytest.raises(BlobCorrupted):
            blobs.read(db, ref.hash)


def test_blob_write_fsyncs_its_folder_and_a_new_two_level_folder(monkeypatch):
    db = get_database()
    db.connection()
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    ref = blobs.prepare(db, [BIG])
    target = blobs.blob_path(db, ref.hash)
    assert str(target.parent) in synced and str(db.blobs_dir) in synced
    assert synced.index(str(target.parent)) > max(i for i, p in enumerate(synced) if ".tmp-" in p)  # after the file


def test_a_writer_that_finds_its_blob_deleted_under_it_writes_it_again():
    """The window gc used to leave: the writer saw the file, gc deleted it, the writer's touch failed
    silently and a row named a deleted blob. Now gc deletes under an exclusive lock on the file, and a
    writer that waited for it sees the path no longer names that file, and writes the blob again."""
    db = get_database()
    ref = blobs.prepare(db, [BIG])
    path = blobs.blob_path(db, ref.hash)
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as gc holds it while it deletes
    writer = threading.Thread(target=blobs.prepare, args=(db, [BIG]))
    writer.start()
    time.sleep(0.2)
    assert writer.is_alive()  # waiting for the lock, not refreshing a file being deleted
    os.unlink(path)
    os.close(fd)
    writer.join(5)
    assert bytes(blobs.read(db, ref.hash)) == BIG


def test_full_disk_is_one_error_naming_artifact_store_and_free_space_and_leaves_nothing(tmp_path, monkeypatch):
    mount = tmp_path / "small"
    try:
        disk = small_disk.mounted(mount, 2 << 20)
        disk.__enter__()
    except small_disk.Unavailable as exc:
        pytest.skip(str(exc))
    try:
        monkeypatch.setenv("LABPIPE_STORE", str(mount / "store"))
        labpipe.set_store(mount / "store")
        t = Task.create(task_name="big")
        small_disk.fill(mount, leave=200_000)
        with pytest.raises(StoreFull) as info:
            t.upload_artifact("weights", np.ones(100_000))  # 800 KB
        message = str(info.value)
        assert "artifact 'weights'" in message and str(mount / "store") in message and "bytes free" in message
        leftovers = [p for p in (mount / "store" / "blobs").rglob("*") if p.is_file()]
        assert leftovers == [] and "weights" not in t.artifacts
    finally:
        get_database().close()
        disk.__exit__(None, None, None)


def test_a_lock_held_on_a_blob_while_forking_is_not_kept_by_the_child():
    """The pool forks workers from a pipeline's process while its other threads may hold a blob lock:
    the child must not keep that lock alive (gc and quarantine would wait on it as long as it lives)."""
    db = get_database()
    ref = blobs.prepare(db, [BIG])
    path = blobs.blob_path(db, ref.hash)
    fd = blobs._open_for_lock(path)
    fcntl.flock(fd, fcntl.LOCK_SH)
    pid = os.fork()
    if pid == 0:  # the child lives on for a while, as a worker would
        time.sleep(10)
        os._exit(0)
    try:
        blobs._close_locked(fd)
        other = os.open(path, os.O_RDONLY)
        try:
            # free as soon as the child has run its fork hook (a moment), not when it exits
            deadline = time.monotonic() + 3
            while True:
                try:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the forked child kept the lock"
                    time.sleep(0.01)
        finally:
            os.close(other)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_blobs_landing_together_fsync_each_folder_once_when_the_batch_ends(monkeypatch):
    db = get_database()
    db.connection()
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    with blobs.landing():
        refs = [blobs.prepare(db, [bytes([i]) * 100_000]) for i in range(20)]
        folders_during = [p for p in synced if ".tmp-" not in p]
    folders = {str(blobs.blob_path(db, r.hash).parent) for r in refs}
    assert folders_during == []  # each blob file itself is still fsynced at once
    after = [p for p in synced if ".tmp-" not in p]
    assert sorted(after) == sorted(folders | {str(db.blobs_dir)})  # once each, blobs/ too (new folders)
