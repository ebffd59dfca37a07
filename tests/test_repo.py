"""A task's repo: pinning a local checkout's commit, and running it from a worktree under the store."""

from __future__ import annotations

import subprocess
import threading

import pytest

from labpipe.errors import LabpipeError, RepoError
from labpipe.repo import prepare_repo, resolve_repo


def git(path, *args):
    return subprocess.run(
        ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A real git checkout with two commits of train.py; returns (path, first commit, second commit)."""
    # keep git from finding a repository above tmp_path, and from needing a global identity
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var, value in (("NAME", "Lab Pipe"), ("EMAIL", "labpipe@example.invalid")):
        monkeypatch.setenv(f"GIT_AUTHOR_{var}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{var}", value)
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("VERSION = 1\n")
    git(path, "add", "train.py")
    git(path, "commit", "-q", "-m", "first")
    first = git(path, "rev-parse", "HEAD")
    (path / "train.py").write_text("VERSION = 2\n")
    git(path, "commit", "-q", "-am", "second")
    return path, first, git(path, "rev-parse", "HEAD")


def test_resolve_repo_pins_head_and_current_branch(checkout):
    path, _, second = checkout
    assert resolve_repo(str(path / "."), None, None) == {
        "repo": str(path),
        "branch": "main",
        "commit": second,
    }


def test_resolve_repo_expands_a_short_commit(checkout):
    path, first, _ = checkout
    assert resolve_repo(str(path), "main", first[:8])["commit"] == first


def test_prepare_repo_at_an_older_commit_sees_the_old_file_while_the_checkout_moved_on(checkout, store):
    path, first, _ = checkout
    tree = prepare_repo(store, str(path), "main", first)
    assert tree.is_relative_to(store / "repos")
    assert (tree / "train.py").read_text() == "VERSION = 1\n"
    assert (path / "train.py").read_text() == "VERSION = 2\n"
    assert git(tree, "rev-parse", "HEAD") == first


def test_prepare_repo_without_commit_uses_the_checkouts_head(checkout, store):
    path, _, second = checkout
    tree = prepare_repo(store, str(path), None, None)
    assert tree.name == second
    assert (tree / "train.py").read_text() == "VERSION = 2\n"


def test_prepare_repo_reuses_the_same_worktree(checkout, store):
    path, first, _ = checkout
    tree = prepare_repo(store, str(path), None, first)
    (tree / "marker").write_text("kept")
    assert prepare_repo(store, str(path), None, first) == tree
    assert prepare_repo(store, str(path), None, first[:10]) == tree
    assert (tree / "marker").read_text() == "kept"


def test_prepare_repo_concurrently_creates_one_worktree(checkout, store):
    path, first, _ = checkout
    results, errors = [], []

    def prepare():
        try:
            results.append(prepare_repo(store, str(path), None, first))
        except Exception as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert git(path, "worktree", "list").count(first) == 1


def test_prepare_repo_redoes_a_worktree_left_half_made(checkout, store):
    path, first, _ = checkout
    tree = prepare_repo(store, str(path), None, first)
    (tree.parent / f"{first}.ready").unlink()  # as if the worker died before finishing
    (tree / "train.py").unlink()
    assert prepare_repo(store, str(path), None, first) == tree
    assert (tree / "train.py").read_text() == "VERSION = 1\n"


def test_prepare_repo_with_a_remote_url_says_it_cannot_fetch_offline(store):
    for url in ("https://github.com/allegroai/clearml.git", "git@github.com:allegroai/clearml.git"):
        with pytest.raises(LabpipeError, match="cannot be fetched offline"):
            prepare_repo(store, url, "master", "abc123")
        with pytest.raises(RepoError, match="local checkout"):
            resolve_repo(url, None, None)


def test_prepare_repo_on_a_folder_that_is_not_a_git_checkout_names_it(tmp_path, store, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepoError, match=r"plain.*\(commit abc123\) is not a git checkout"):
        prepare_repo(store, str(plain), None, "abc123")


def test_prepare_repo_with_an_unknown_commit_names_repo_and_commit(checkout, store):
    path, _, _ = checkout
    with pytest.raises(RepoError, match=rf"{path.name}.*no commit 'deadbeef'"):
        prepare_repo(store, str(path), None, "deadbeef")


def test_resolve_repo_warns_that_uncommitted_changes_are_not_recorded(checkout, caplog):
    path, _, second = checkout
    (path / "train.py").write_text("VERSION = 3\n")
    with caplog.at_level("WARNING", logger="labpipe"):
        assert resolve_repo(str(path), None, None)["commit"] == second
    assert "uncommitted changes" in caplog.text
