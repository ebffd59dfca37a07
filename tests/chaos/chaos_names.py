"""Chaos scenarios for names and permissions (issue 9, holes 1 and 8).

- `fuzzed_names`: hypothesis-made names (path pieces, NUL, control characters, lone surrogates,
  5,000 characters, "../" climbs and absolute paths aimed at a watched folder) given as artifact,
  task, project, step and queue names, and written straight into artifact rows as a shared store
  or an older labpipe might hold them; each is then materialized (`get_local_copy`), written out
  with `labpipe artifact -o`, and (queues) listened on. Figures: files that appeared outside the
  store and the `-o` folder (target 0), and errors that were not the typed ones (target 0).
- `umask_022`: under umask 022, a store folder the user made with mkdir (0755) is used for a real
  pipeline run on pool workers (file blobs, a folder artifact, a script task run from its snapshot),
  cache copies, a labpipe:// download, a git worktree and `labpipe artifact -o`; then the store is
  walked. Figures: folders that are not 0700 and files that are not 0600 (target 0 each).
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import subprocess
import zipfile
from pathlib import Path

import labpipe
from labpipe import config

# ------------------------------------------------------------------------------------------------
# step functions (module level: a worker runs their source)


def make_array(n: int = 20_000):
    import numpy as np

    return np.arange(n, dtype=np.float64)


def make_folder(values):
    import os
    import tempfile

    from labpipe import Task

    folder = tempfile.mkdtemp(prefix="labpipe-chaos-")
    with open(os.path.join(folder, "values.txt"), "w") as fh:
        fh.write(",".join(str(v) for v in values[:10]))
    os.makedirs(os.path.join(folder, "sub"))
    with open(os.path.join(folder, "sub", "n.txt"), "w") as fh:
        fh.write(str(len(values)))
    Task.current_task().upload_artifact("folder", folder, delete_after_upload=True)
    return len(values)


def plain_step(x: int = 1):
    return x


# ------------------------------------------------------------------------------------------------
# shared helpers


class _Store:
    """Points this process (and the processes it starts) at a store under `workdir`; restores after."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._env = os.environ.get(config.ENV_STORE)
        self._explicit = config._explicit

    def __enter__(self) -> Path:
        labpipe.set_store(self.root)
        return self.root

    def __exit__(self, *exc: object) -> None:
        from labpipe.agent import pool
        from labpipe.task import Task

        if pool._shared is not None and pool._shared._owner == os.getpid():
            pool._shared.stop()
            pool._shared = None
        Task._current = None
        config._explicit = self._explicit
        if self._env is None:
            os.environ.pop(config.ENV_STORE, None)
        else:
            os.environ[config.ENV_STORE] = self._env


def _listing(top: Path, skip: tuple[Path, ...] = ()) -> set[str]:
    """Every path under `top` (links not followed), leaving out the `skip` subtrees."""
    found: set[str] = set()
    for dirpath, dirs, files in os.walk(top):
        here = Path(dirpath)
        dirs[:] = [d for d in dirs if here / d not in skip]
        found.update(str(here / n) for n in dirs + files)
    return found


def _ancestors(path: Path) -> set[str]:
    """The entries of every folder above `path`, up to the filesystem root."""
    found: set[str] = set()
    for folder in path.resolve().parents:
        try:
            found.update(os.path.join(folder, n) for n in os.listdir(folder))
        except OSError:
            pass
    return found


def _zip_with(entry: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0)), b"hostile")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------
# fuzzed names


def _name_strategy(outside: Path):
    from hypothesis import strategies as st

    pieces = st.sampled_from(["..", ".", "/", "\\", "\0", "\n", "\t", "\x7f", "\x85", "~", "$", "{", "}", "a", "é",
                              "日本", " ", "-", "_", ".pkl", "con", "\ud800", "%2e%2e", "*", "?"])
    climbs = st.builds(lambda k, s: "../" * k + "outside/" + s, st.integers(1, 8), st.text("abc", min_size=1, max_size=4))
    absolute = st.text("abc", min_size=1, max_size=4).map(lambda s: str(outside / s))
    return st.one_of(
        st.text(max_size=30),
        st.lists(pieces, max_size=8).map("".join),
        climbs,
        absolute,
        st.integers(240, 300).map(lambda n: "n" * n),
        st.integers(1000, 5000).map(lambda n: "x" * n),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
    )


def fuzzed_names(workdir: Path, full: bool) -> dict:
    """Fuzzed names through every place a name is created or read; count what escapes and what is untyped."""
    from click.testing import CliRunner
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.configuration import set_hypothesis_home_dir

    from labpipe import PipelineController, PipelineDecorator, Task
    from labpipe.cli import main
    from labpipe.errors import ArtifactError, InvalidName, PipelineError, UnsafePath
    from labpipe.store import blobs, outputs
    from labpipe.store.db import get_database
    from labpipe.store.wakeup import Listener

    examples = 10_000 if full else 300
    sandbox = Path(workdir) / "sandbox"
    store_root, out, outside, cwd = (sandbox / n for n in ("store", "out", "outside", "cwd"))
    for folder in (out, outside, cwd):
        folder.mkdir(parents=True, exist_ok=True)
    counts = {"names": 0, "refused": 0, "accepted": 0, "unstorable_rows": 0, "untyped_errors": 0, "cli_tracebacks": 0}
    untyped: list[str] = []
    old_cwd = os.getcwd()
    os.chdir(cwd)
    set_hypothesis_home_dir(Path(workdir) / ".hypothesis")  # its caches go under workdir, not the checkout
    runner = CliRunner()
    try:
        with _Store(store_root):
            db = get_database()
            owner = Task.create(project_name="chaos", task_name="names")
            blob = blobs.prepare(db, [b"hostile row"])
            zips = {}
            before = _listing(sandbox, skip=(store_root, out))
            above = _ancestors(sandbox)
            components: set[str] = set()

            def typed(exc: BaseException, *kinds: type) -> bool:
                if isinstance(exc, (InvalidName, *kinds)):
                    counts["refused"] += 1
                    return True
                counts["untyped_errors"] += 1
                untyped.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                return False

            def cli(*args: str) -> None:
                result = runner.invoke(main, list(args))
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    counts["cli_tracebacks"] += 1
                    untyped.append(f"CLI {type(result.exception).__name__}: {str(result.exception)[:200]}")

            def as_artifact(name: str) -> None:
                try:
                    owner.upload_artifact(name, [1, 2, 3])
                except Exception as exc:  # noqa: BLE001 - the point: any untyped error is counted
                    typed(exc)
                    cli("artifact", owner.id, name, "-o", str(out))  # a refused name is one clean line too
                    return
                counts["accepted"] += 1
                owner.artifacts[name].get_local_copy()
                cli("artifact", owner.id, name, "-o", str(out))

            def as_row(name: str, kind: str) -> None:
                """A row as another user or an older labpipe may have written it: the name unchecked."""
                ref = blob
                try:
                    if kind == "folder":
                        if name not in zips:
                            zips[name] = blobs.prepare(db, [_zip_with(name)])
                        ref = zips[name]
                    outputs.put_artifact(db, owner.id, "row", ref, kind=kind, filename=name)
                except UnicodeEncodeError:  # SQLite cannot hold it: no store can have such a row
                    counts["unstorable_rows"] += 1
                    return
                try:
                    owner.artifacts["row"].get_local_copy()
                    counts["accepted"] += 1
                except Exception as exc:  # noqa: BLE001
                    typed(exc, UnsafePath, ArtifactError)  # e.g. a zip entry too long for any filesystem
                cli("artifact", owner.id, "row", "-o", str(out))

            def as_task(name: str) -> None:
                try:
                    Task.create(project_name=name, task_name=name)
                    counts["accepted"] += 1
                except Exception as exc:  # noqa: BLE001
                    typed(exc)

            def as_step(name: str) -> None:
                try:
                    PipelineController(name="fuzz", project="chaos", version="1").add_function_step(
                        name=name, function=plain_step, function_return=[name])
                    PipelineDecorator.component(name=name, return_values=[name])(plain_step)
                    counts["accepted"] += 1
                except Exception as exc:  # noqa: BLE001
                    typed(exc, PipelineError)

            def as_queue(name: str) -> None:
                task = Task.create(project_name="chaos", task_name="queued")
                try:
                    Task.enqueue(task, queue_name=name)
                except Exception as exc:  # noqa: BLE001
                    typed(exc)
                    cli("clone", task.id, "--enqueue", name)
                    return
                counts["accepted"] += 1
                Listener(store_root, [name]).close()  # what a worker serving it makes: its wake-up FIFO
                Task.dequeue(task)

            kinds = st.sampled_from(["artifact", "row-pickle", "row-file", "row-folder", "task", "step", "queue"])

            @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(kind=kinds, name=_name_strategy(outside))
            def one(kind: str, name: str) -> None:
                counts["names"] += 1
                for part in re.split(r"[/\\]", name):
                    components.update((part, part + ".pkl", part + ".npy"))
                if kind == "artifact":
                    as_artifact(name)
                elif kind.startswith("row-"):
                    as_row(name, kind[4:])
                elif kind == "task":
                    as_task(name)
                elif kind == "step":
                    as_step(name)
                else:
                    as_queue(name)

            one()
            # the sandbox must be exactly as it was; above it (where other programs come and go), no
            # new entry may carry a name the fuzzing used
            escaped = sorted(_listing(sandbox, skip=(store_root, out)) - before)
            escaped += sorted(p for p in _ancestors(sandbox) - above if os.path.basename(p) in components)
            # cache/ holds one folder per content hash (and http/, the distributions list)
            cache = store_root / "cache"
            strays_in_cache = [n for n in (os.listdir(cache) if cache.is_dir() else ())
                               if not (re.fullmatch(r"[0-9a-f]{32}", n) or n == "http" or n.startswith("distributions-"))]
            # inside the store, everything written for these names lies under cache/ or wake/
            strays = sorted(p for p in _listing(store_root, skip=(store_root / "cache", store_root / "blobs", store_root / "wake"))
                            if Path(p).parent != store_root)
    finally:
        os.chdir(old_cwd)
        set_hypothesis_home_dir(None)
    return {
        **counts,
        "outside_files": len(escaped),
        "store_strays": len(strays) + len(strays_in_cache),
        "examples": examples,
        **({"first_escaped": escaped[0]} if escaped else {}),
        **({"first_untyped": untyped[0]} if untyped else {}),
    }


# ------------------------------------------------------------------------------------------------
# umask 022


def _git(path: Path, *args: str) -> str:
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(path.parent), GIT_AUTHOR_NAME="Lab Pipe",
               GIT_AUTHOR_EMAIL="labpipe@example.invalid", GIT_COMMITTER_NAME="Lab Pipe",
               GIT_COMMITTER_EMAIL="labpipe@example.invalid")
    return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, text=True, env=env).stdout.strip()


_SCRIPT = """\
from labpipe import Task
task = Task.init(project_name="chaos", task_name="script")
task.upload_artifact("from_script", list(range(30_000)))
"""


def _loose(root: Path) -> tuple[list[str], list[str], int]:
    """Folders under `root` (itself included) that are not 0700, files that are not 0600, how many looked at."""
    folders, files, seen = [], [], 0
    for dirpath, _dirs, names in os.walk(root):
        here = Path(dirpath)
        seen += 1
        if stat.S_IMODE(os.lstat(here).st_mode) != 0o700:
            folders.append(f"{here} {oct(stat.S_IMODE(os.lstat(here).st_mode))}")
        for name in names:
            path = here / name
            seen += 1
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue  # git's own links in a worktree, if the project had any
            if stat.S_IMODE(st.st_mode) != 0o600:
                files.append(f"{path} {oct(stat.S_IMODE(st.st_mode))}")
    return folders, files, seen


def umask_022(workdir: Path, full: bool) -> dict:
    """A real pipeline, cache, downloads, worktree and CLI round trip under umask 022; then walk the store."""
    from click.testing import CliRunner

    from labpipe import PipelineController, StorageManager, Task
    from labpipe.cli import main
    from labpipe.repo import prepare_repo
    from labpipe.store.db import get_database

    workdir = Path(workdir)
    store_root = workdir / "store"
    out = workdir / "out"
    old_umask = os.umask(0o022)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("labpipe").addHandler(handler)
    try:
        os.mkdir(store_root, 0o755)  # as a user's `mkdir store` leaves it
        out.mkdir()
        with _Store(store_root):
            db = get_database()
            db.connection()
            tightened = stat.S_IMODE(os.stat(store_root).st_mode) == 0o700
            warned = any(str(store_root) in r.getMessage() for r in records)

            pipe = PipelineController(name="umask", project="chaos", version="1")
            pipe.add_function_step("array", make_array, function_kwargs={"n": 40_000 if full else 20_000}, function_return=["array"])
            pipe.add_function_step("folder", make_folder, function_kwargs={"values": "${array.array}"}, function_return=["count"])
            ok = pipe.start_locally(run_pipeline_steps_locally=True)

            script = workdir / "script.py"
            script.write_text(_SCRIPT)
            script_task = Task.create(project_name="chaos", task_name="script", script=script)
            script.unlink()  # the worker runs the snapshot recorded at create time
            from labpipe.agent.pool import ensure_pool

            ensure_pool({"umask-scripts": 1})
            Task.enqueue(script_task, queue_name="umask-scripts")
            script_ok = script_task.wait_for_status(timeout=60) == "completed"

            copies = 0
            for task in Task.get_tasks(project_name="chaos"):
                for art in task.artifacts.values():
                    StorageManager.get_local_copy(art.url)
                    art.get_local_copy()
                    art.get_local_copy(extract_archive=False)
                    result = CliRunner().invoke(main, ["artifact", task.id, art.name, "-o", str(out)])
                    copies += result.exit_code == 0

            repo = workdir / "project"
            repo.mkdir()
            _git(repo, "init", "-q", "-b", "main")
            (repo / "train.py").write_text("VERSION = 1\n")
            _git(repo, "add", "train.py")
            _git(repo, "commit", "-q", "-m", "first")
            tree = prepare_repo(store_root, str(repo), None, None)

            folders, files, seen = _loose(store_root)
            out_folders, out_files, _ = _loose(out)
            out_folders = [f for f in out_folders if not f.startswith(f"{out} ")]  # -o itself is the user's
            wal = [p.name for p in store_root.iterdir() if p.name.startswith("labpipe.db")]
    finally:
        os.umask(old_umask)
        logging.getLogger("labpipe").removeHandler(handler)
    return {
        "pipeline_ok": bool(ok),
        "script_ok": bool(script_ok),
        "worktree": tree.is_dir(),
        "cli_copies": copies,
        "store_tightened": tightened,
        "warned": warned,
        "db_files": len(wal),
        "checked": seen,
        "loose_folders": len(folders),
        "loose_files": len(files),
        "loose_outputs": len(out_folders) + len(out_files),
        **({"first_loose": (folders + files)[0]} if folders or files else {}),
    }


SCENARIOS = {"fuzzed_names": fuzzed_names, "umask_022": umask_022}
TARGETS = {
    "fuzzed_names": "0 files written outside the store over 10,000 fuzzed names; every refusal a typed error, no CLI traceback",
    "umask_022": "under umask 022, every folder in the store 0700 and every file 0600 (db, -wal, -shm included); "
                 "a 0755 store folder warned about and tightened",
}
