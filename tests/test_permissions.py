"""Every folder labpipe makes is 0700 and every file 0600, whatever the umask; a store folder others can
read is warned about, and tightened when it is this user's (issue 9, hole 8). The whole-store walk after a
real pipeline run under umask 022 is tests/chaos/test_chaos_names.py."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess

import pytest

from labpipe import Task
from labpipe.store.db import Database


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_store_folder_made_with_mkdir_is_warned_about_and_made_0700(tmp_path, caplog):
    root = tmp_path / "store"
    with umask(0o022):
        root.mkdir()
        (root / "blobs").mkdir()
    assert _mode(root) == 0o755
    with caplog.at_level(logging.WARNING, logger="labpipe"):
        Database(root).connection()
    assert _mode(root) == 0o700 and _mode(root / "blobs") == 0o700
    assert any(f"{root} could be read by others (mode 0755); made it 0700" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_readable_store_folder_of_another_user_is_only_warned_about(tmp_path, caplog):
    root = tmp_path / "theirs"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    os.chown(root, 4242, -1)
    with caplog.at_level(logging.WARNING, logger="labpipe"):
        Database(root).connection()
    assert _mode(root) == 0o777
    assert any("is not this user's to change" in r.getMessage() and "chmod 700" in r.getMessage() for r in caplog.records)


def test_folders_made_above_a_new_store_are_0700_too(tmp_path):
    with umask(0o022):
        Database(tmp_path / "a" / "b" / "store").connection()
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "store", tmp_path / "a" / "b" / "store" / "blobs"):
        assert _mode(folder) == 0o700, folder


def test_the_database_and_its_wal_and_shm_files_are_0600_under_umask_022(tmp_path):
    with umask(0o022):
        db = Database(tmp_path / "store")
        db.write(lambda c: c.execute("INSERT INTO queues(name, created) VALUES ('q', 0)"))
        names = sorted(p.name for p in (tmp_path / "store").iterdir() if p.name.startswith("labpipe.db"))
        assert names == ["labpipe.db", "labpipe.db-shm", "labpipe.db-wal"]
        for name in names:
            assert _mode(tmp_path / "store" / name) == 0o600, name


def test_cache_copies_are_0700_folders_and_0600_files_under_umask_022(store, tmp_path):
    import numpy as np

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "rows.csv").write_text("a\n1\n")
    task = Task.create(task_name="t")
    task.upload_artifact("data", data)
    task.upload_artifact("array", np.arange(50_000))
    task.upload_artifact("obj", {"a": 1})
    with umask(0o022):
        for art in task.artifacts.values():
            art.get_local_copy()
            art.get_local_copy(extract_archive=False)
    for dirpath, _dirs, files in os.walk(store / "cache"):
        assert _mode(dirpath) == 0o700, dirpath
        for name in files:
            assert _mode(os.path.join(dirpath, name)) == 0o600, name


def test_a_git_worktree_under_the_store_is_private_under_umask_022(tmp_path, store, monkeypatch):
    from labpipe.repo import prepare_repo

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var, value in (("NAME", "Lab Pipe"), ("EMAIL", "labpipe@example.invalid")):
        monkeypatch.setenv(f"GIT_AUTHOR_{var}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{var}", value)
    repo = tmp_path / "project"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "train.py").write_text("VERSION = 1\n")
    with umask(0o022):
        for args in (["init", "-q", "-b", "main"], ["add", "pkg"], ["commit", "-q", "-m", "first"]):
            subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
        tree = prepare_repo(store, str(repo), None, None)
    assert (tree / "pkg" / "train.py").read_text() == "VERSION = 1\n"
    for dirpath, _dirs, files in os.walk(store / "repos"):
        assert _mode(dirpath) & 0o077 == 0, dirpath
        for name in files:
            assert _mode(os.path.join(dirpath, name)) & 0o077 == 0, os.path.join(dirpath, name)
