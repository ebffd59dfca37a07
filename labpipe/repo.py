"""A task's `repo`: a local git checkout, run at the commit recorded when the task was created.

ClearML records a task's repository, branch and commit, and its agent clones that commit to run the
task. Here there is no network, so `repo` must be a local checkout; instead of cloning, the worker
checks the recorded commit out as a git worktree under the store (`<store>/repos/<repo key>/<commit>`),
so the user's checkout can move on (new commits, edits, another branch) without changing what a task
runs. Worktrees share the checkout's object database, so preparing one costs a checkout, not a copy
of the history, and a prepared one is reused by every later task at that commit.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from labpipe.errors import RepoError

log = logging.getLogger(__name__)

# rev-parse and friends answer in milliseconds; a checkout of a large tree can take a while.
_GIT_TIMEOUT = 30.0
_CHECKOUT_TIMEOUT = 600.0
# How long a worker waits for another one preparing the same repo before giving up.
_LOCK_TIMEOUT = _CHECKOUT_TIMEOUT + 60.0

_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)
_FULL_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

# Variables that would point git at another repository or index than the one we name.
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


def resolve_repo(repo: str, branch: str | None = None, commit: str | None = None) -> dict:
    """Pin a task's repo at creation time: its absolute location, branch and full commit id.

    repo: a local git checkout (any folder inside it); branch: recorded as given, else the checkout's
    current branch (None when detached); commit: resolved to a full id, else the tip of `branch` when
    given, else the checkout's HEAD, as ClearML records HEAD for a local repository.

    Returns `{"repo": <top-level folder>, "branch": ..., "commit": <full id>}`. Uncommitted changes are
    not part of a commit, so they are not part of the task: a warning says so.
    """
    path = _local_checkout(repo, commit)
    top = Path(_git(path, "rev-parse", "--show-toplevel", repo=repo, commit=commit))
    if branch is None:
        branch = (
            _git(top, "symbolic-ref", "--short", "-q", "HEAD", repo=repo, commit=commit, check=False) or None
        )
    sha = _resolve_commit(top, commit or branch or "HEAD", repo=repo)
    dirty = _git(top, "status", "--porcelain", "--untracked-files=no", repo=repo, commit=sha, check=False)
    if dirty:
        log.warning(
            "repo %s has uncommitted changes; the task records commit %s and runs that, without them "
            "(commit them first to include them)",
            top,
            sha[:12],
        )
    return {"repo": str(top), "branch": branch, "commit": sha}


def prepare_repo(store_root: Path, repo: str, branch: str | None, commit: str | None) -> Path:
    """A worktree of `repo` at `commit` under `<store_root>/repos/`, for a task to run in; returns its path.

    store_root: the store folder; repo, branch, commit: as recorded on the task (see resolve_repo). With
    no commit, the tip of `branch` (else HEAD) of the checkout as it is now is used.

    The worktree is detached at the commit and shared by every task that runs that commit, so files a
    task writes there stay for the next one. Safe to call from several workers at once: one creates the
    worktree under a lock while the others wait and then reuse it.
    """
    path = _local_checkout(repo, commit)
    key = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    base = Path(store_root) / "repos" / key
    # Fast path, no git call: a full commit id whose worktree was completed earlier (the ready
    # marker is written only after `git worktree add` succeeded, so a crashed half-checkout is not it).
    if commit and _FULL_SHA.match(commit.lower()):
        ready = _ready_marker(base, commit.lower())
        if ready.exists() and (base / commit.lower()).is_dir():
            return base / commit.lower()
    sha = _resolve_commit(path, commit or branch or "HEAD", repo=repo)
    tree, ready = base / sha, _ready_marker(base, sha)
    if ready.exists() and tree.is_dir():
        return tree
    # 0700 like the rest of the store: a worktree holds the project's code.
    base.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    base.mkdir(exist_ok=True, mode=0o700)
    with _locked(base / ".lock", repo=repo, commit=sha):
        if ready.exists() and tree.is_dir():  # another worker made it while we waited
            return tree
        if tree.exists():  # left half-made by a worker that died mid-checkout
            log.info("removing incomplete worktree %s before checking it out again", tree)
            shutil.rmtree(tree, ignore_errors=True)
        # Forget worktrees whose folders are gone (a removed store, the rmtree above), else `add` refuses.
        _git(path, "worktree", "prune", repo=repo, commit=sha)
        _git(
            path,
            "worktree",
            "add",
            "--detach",
            str(tree),
            sha,
            repo=repo,
            commit=sha,
            timeout=_CHECKOUT_TIMEOUT,
        )
        os.close(os.open(ready, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    log.info("prepared worktree of %s at %s in %s", path, sha[:12], tree)
    return tree


def _ready_marker(base: Path, sha: str) -> Path:
    # Beside the worktree, not inside it: a file inside would show up in the task's `git status`.
    return base / f"{sha}.ready"


def _local_checkout(repo: str, commit: str | None) -> Path:
    """The absolute folder `repo` names; RepoError for remote URLs and folders that do not exist."""
    if repo.lower().startswith("file://"):
        repo = repo[len("file://") :]
    elif _REMOTE.match(repo):
        raise RepoError(
            f"repo {repo!r} (commit {commit or 'HEAD'}) is a remote repository, and it cannot be fetched offline: "
            "clone it yourself and pass the local checkout's path as repo="
        )
    path = Path(repo).expanduser().resolve()
    if not path.is_dir():
        raise RepoError(
            f"repo {repo!r} (commit {commit or 'HEAD'}): no such folder; pass the path of a local git checkout"
        )
    return path


def _resolve_commit(path: Path, rev: str, repo: str) -> str:
    """The full commit id `rev` names in the checkout at `path`; RepoError naming repo and rev if none."""
    out = _git(path, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}", repo=repo, commit=rev, check=False)
    if not out:
        raise RepoError(
            f"repo {repo!r} has no commit {rev!r}; was it committed in this checkout (not only in a clone "
            "elsewhere), or was history rewritten? Record a commit that exists, or omit commit to use HEAD"
        )
    return out


def _git(
    path: Path,
    *args: str,
    repo: str,
    commit: str | None,
    check: bool = True,
    timeout: float = _GIT_TIMEOUT,
) -> str | None:
    """Run `git -C path args...` and return its stripped stdout.

    With check=False a non-zero exit returns None, except that "not a git repository" always raises,
    since no caller can go on from that.
    """
    env = {k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")  # never prompt; English messages we can read
    cmd = ["git", "-C", str(path), *args]
    try:
        # umask 077: a worktree's files and folders are the user's code, private like the rest of the store
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False, umask=0o077)
    except FileNotFoundError as exc:
        raise RepoError(
            f"repo {repo!r} (commit {commit or 'HEAD'}): the `git` command is not installed; install git to run tasks with repo="
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise RepoError(
            f"repo {repo!r} (commit {commit or 'HEAD'}): `git {' '.join(args)}` did not finish within {timeout:.0f} s"
        ) from exc
    if done.returncode == 0:
        return done.stdout.strip()
    err = done.stderr.strip()
    if "not a git repository" in err:
        raise RepoError(
            f"repo {repo!r} (commit {commit or 'HEAD'}) is not a git checkout ({err.splitlines()[-1]}); "
            "pass the path of a folder inside a git repository"
        )
    if check:
        raise RepoError(f"repo {repo!r} (commit {commit or 'HEAD'}): `git {' '.join(args)}` failed: {err}")
    return None


class _locked:
    """An exclusive flock on `path` for a `with` block: one worker prepares a repo's worktrees at a time.

    flock, not a lock file that exists or not: the kernel releases it when its holder dies, so a
    worker killed mid-checkout never leaves the others waiting for ever.
    """

    def __init__(self, path: Path, repo: str, commit: str) -> None:
        self.path, self.repo, self.commit = path, repo, commit
        self.fd = -1

    def __enter__(self) -> _locked:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + _LOCK_TIMEOUT
        delay = 0.005
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(self.fd)
                    raise
            if time.monotonic() > deadline:
                os.close(self.fd)
                raise RepoError(
                    f"repo {self.repo!r} (commit {self.commit}): another worker has been preparing a worktree "
                    f"for over {_LOCK_TIMEOUT:.0f} s (it holds {self.path}); see whether its git checkout is stuck"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
