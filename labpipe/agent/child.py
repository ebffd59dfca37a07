"""What runs inside a task's own process, forked from its worker.

A function task runs its stored source in a fresh namespace (a standalone script: none of the
caller's or the worker's globals), with `LABPIPE_TASK_ID` set so `Task.current_task()` is the step
task. Its return value(s) are encoded into blobs here, in the child, so that unpickling-free bytes
are all the worker ever handles: the worker records them with the task's completion in one fenced
transaction. A script task replaces the child with a fresh interpreter running the script.

The child reports back through a pipe, as one JSON message: ok or not, the status message, the
artifacts, and the modules it imported (the worker imports those before its next fork).
"""

from __future__ import annotations

import _signal
import base64
import builtins
import faulthandler
import importlib.util
import io
import json
import linecache
import os
import signal
import sys
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .. import artifacts as _artifacts
from .. import frameworks
from ..config import ENV_STORE
from ..store.db import Database
from ..store.records import TaskRow
from ..task_env import ENV_TASK_ID

# Modules whose import does something (prints the Zen of Python, opens a web browser): never re-imported.
NEVER_WARM = frozenset({"this", "antigravity", "__main__", "__hello__", "__phello__"})


_STREAMS: tuple[io.TextIOWrapper, io.TextIOWrapper] | None = None


def warm_up() -> None:
    """In the worker, once: build what every child would otherwise build after the fork.

    A forked child pays for every page it writes (copy-on-write), so work done once in the worker
    and shared read-only is cheaper than the same work repeated in each child.
    """
    global _STREAMS
    # Line-buffered text streams over fds 1 and 2, whatever those fds are when written to: in a child
    # they are the console pipes. The worker's own sys.stdout may be anything (a pytest capture, a
    # closed terminal), and block buffering would hide a task's output until it ends. Whole lines, not
    # each write: `print("total is", x)` is four writes, and a progress line another thread writes to
    # stderr meanwhile must not land inside it in the task's console.
    _STREAMS = tuple(
        io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                         line_buffering=True)
        for fd in (1, 2)
    )
    # A crash in native code (segfault) leaves a Python traceback on fd 2: the task's console.
    faulthandler.enable(file=2, all_threads=False)
    # Which files are libraries' (the cache's rule, source.py, imported here rather than with this
    # module): its folders, computed once here rather than in every child.
    from ..source import is_library_path

    is_library_path(__file__)
    # Run the result-encoding path a few times here: Python 3.11 specialises code as it runs it,
    # writing into the code objects, which each child would otherwise do (and copy) again.
    # Best effort: a rehearsal that fails only costs speed.
    rehearsal = TaskRow(id="rehearsal", name="rehearsal", project="", type="custom", status="in_progress")
    try:
        for value in (1, "text", [1.5], {"k": None}) * 4:
            json.dumps({"artifacts": _encode_returns(None, rehearsal, ["value"], value), "ok": True})
    except Exception:  # noqa: BLE001
        pass


def prepare_process(row: TaskRow, out_fd: int, err_fd: int, close_fds: list[int]) -> None:
    """Turn a freshly forked worker into the task's process: own process group, console pipes, env."""
    os.setpgid(0, 0)  # so that stopping the task kills whatever it started too
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_DFL)  # the C function: no enum wrapping of the old handler
    signal.set_wakeup_fd(-1)
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.close(out_fd)
    os.close(err_fd)
    if _STREAMS is None:
        warm_up()
    sys.stdout = sys.__stdout__ = _STREAMS[0]
    sys.stderr = sys.__stderr__ = _STREAMS[1]
    os.environ[ENV_TASK_ID] = row.id
    from ..task import Task

    Task.forget_current()  # the worker (or the pool's owner) may have had one; this process is the step
    frameworks.configure(True)  # what joblib / xgboost save becomes the step's output model, as in ClearML


def compile_step(row: TaskRow) -> tuple[str, Any]:
    """(file name, code object) of a function task's source; compiled in the worker, cached by source.

    Raises SyntaxError as compile() does (the caller lets the child report it).
    """
    script = row.script
    filename = f"<labpipe step {row.name}>"
    source = "\n\n".join([*script.get("helpers", []), script["source"]])
    key = (filename, source)
    code = _compiled.get(key)
    if code is None:
        if len(_compiled) > 256:
            _compiled.clear()
        code = _compiled[key] = compile(source, filename, "exec")
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return filename, code


_compiled: dict[tuple[str, str], Any] = {}


def run_function(db: Database, row: TaskRow, kwargs: dict[str, Any], refs: dict[str, dict], result_fd: int) -> int:
    """Run a function task's source as a standalone script and report; returns the exit code to use."""
    script = row.script
    before = len(sys.modules)
    report: dict[str, Any] = {"ok": False, "message": "", "artifacts": []}
    filename = f"<labpipe step {row.name}>"
    try:
        _enter_working_dir(script)
        args = dict(kwargs)
        for arg, ref in refs.items():
            args[arg] = _load_reference(db, arg, ref)
        filename, code = compile_step(row)
        namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "__file__": filename}
        exec(code, namespace)
        func = namespace[script["function_name"]]
        value = func(**args)
        if isinstance(value, Coroutine):  # an `async def` component: run it to completion here
            import asyncio  # only then: importing asyncio costs ~10 ms per fresh worker

            value = asyncio.run(value)
        report["artifacts"] = _encode_returns(db, row, script.get("return_values", ["return_object"]), value)
        report["ok"] = True
    except BaseException as exc:  # noqa: B036 - everything the step raises, SystemExit included, fails it
        report["message"] = _describe(exc, script, filename)
        report["error"] = root_cause(exc, filename, row)
        _print_traceback(exc, filename)
    report["imports"], report["warm"] = _new_imports(before)
    _stop_own_pool()
    _send(result_fd, report)
    # Close the console pipes too: the worker then knows the step is over and moves on while the
    # kernel tears this process down (which takes longer than many steps).
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            stream.flush()
            os.close(fd)
        except (OSError, ValueError):
            pass
    return 0 if report["ok"] else 1


def exec_script(row: TaskRow, store_root: Path, args: list[str]) -> None:
    """Replace this process with a fresh interpreter running the task's script (never returns)."""
    script = row.script
    entry = script.get("entry_point", "")
    if not os.path.isfile(entry):
        # The file moved or was deleted since the task was created: run the snapshot taken then.
        from .. import contained

        # 0600 in a 0700 folder, whatever the umask: the script is the user's code
        snapshot = contained.private_dir(store_root / "scripts") / contained.file_name_for(row.id, ".py", fallback="task")
        contained.replace_file(snapshot, script.get("source", "").encode("utf-8"))
        print(f"labpipe: {entry} no longer exists; running the copy recorded when the task was created", file=sys.stderr)
        entry = str(snapshot)
    _enter_working_dir(script)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[ENV_STORE] = str(store_root)
    env[ENV_TASK_ID] = row.id
    # The script must import this labpipe, wherever it is installed or checked out.
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, entry, *args], env)
    except OSError as exc:
        print(f"labpipe: cannot start {sys.executable} {entry}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(127)


def script_command_line(script: dict, params: list[tuple[str, str, Any]]) -> list[str]:
    """The command-line arguments a script task runs with.

    A pipeline run (its script records `pipeline_function` or `pipeline_controller`) is re-run with the
    command line it was started with: its `Args/` are the pipeline's arguments, which the pipeline
    reads from its task, not command-line options. Any other script gets `--name value` per `Args/`.
    """
    if script.get("pipeline_function") or script.get("pipeline_controller"):
        return [str(a) for a in script.get("argv", [])]
    return script_arguments([(n, v) for s, n, v in params if s == "Args"])


def script_arguments(params: list[tuple[str, Any]]) -> list[str]:
    """`--name value` command-line arguments from a script task's `Args/` parameters.

    True is a bare `--name` flag and False or None leave the argument out (argparse's store_true);
    a list gives `--name a b` (nargs).
    """
    out: list[str] = []
    for name, value in params:
        flag = f"--{name}"
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


def _enter_working_dir(script: dict) -> None:
    # enable_local_imports=False: the script's folder must not be importable, even though a worker
    # forked from the script's own process inherited it on sys.path (and the empty entry, the cwd).
    for folder in script.get("hidden_paths", []):
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != os.path.abspath(folder)]
    for folder in reversed(script.get("sys_path", [])):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    workdir = script.get("working_dir")
    if workdir and os.path.isdir(workdir):
        os.chdir(workdir)
    elif workdir:
        print(f"labpipe: working folder {workdir} does not exist here; running in {os.getcwd()}", file=sys.stderr)


def resolve_references(db: Database, refs: dict[str, Any]) -> dict[str, Any]:
    """In the worker, before forking: each `kwargs_artifacts/<arg>` reference's artifact row and, for an
    inline blob, its bytes. The task's process then loads its inputs without opening a database
    connection of its own (about a millisecond per step). A bad reference becomes the error to raise."""
    from ..errors import ArtifactError
    from ..store import blobs, outputs

    out: dict[str, Any] = {}
    for arg, ref in refs.items():
        if not isinstance(ref, dict) or "task" not in ref or "artifact" not in ref:
            out[arg] = ArtifactError(f"argument {arg!r}: kwargs_artifacts/{arg} should be {{'task': id, 'artifact': name}}, got {ref!r}")
            continue
        row = outputs.get_artifact(db, ref["task"], ref["artifact"])
        if row is None:
            out[arg] = ArtifactError(
                f"argument {arg!r}: task {ref['task']} has no artifact {ref['artifact']!r} (deleted, or its step did not store it)"
            )
            continue
        out[arg] = {"task": ref["task"], "name": row["name"], "hash": row["hash"], "kind": row["kind"],
                    "filename": row["filename"], "inline": blobs.inline_bytes(db, row["hash"])}
    return out


def _load_reference(db: Database, arg: str, ref: Any) -> Any:
    """The object a resolved `kwargs_artifacts/<arg>` reference names, verified against its hash before unpickling."""
    if isinstance(ref, Exception):
        raise ref
    what = f"artifact {ref['name']!r} of task {ref['task']} (argument {arg!r})"
    if ref["kind"] in ("file", "folder"):
        return str(_artifacts.materialize(db, ref["hash"], ref["kind"], ref["filename"], what=what))
    from ..store import blobs

    return _artifacts.decode(blobs.read(db, ref["hash"], what=what, inline=ref["inline"]), ref["kind"])


def _encode_returns(db: Database, row: TaskRow, names: list[str], value: Any) -> list[dict]:
    """Blobs for the return value(s), named by `names`; raises ValueError/ArtifactError saying what is wrong."""
    if not names:
        return []
    if len(names) == 1:
        pairs = [(names[0], value)]
    else:
        if not isinstance(value, (tuple, list)):
            raise ValueError(
                f"expected {len(names)} return values ({', '.join(names)}), got 1 value of type {type(value).__qualname__}"
            )
        if len(value) != len(names):
            raise ValueError(f"expected {len(names)} return values ({', '.join(names)}), got {len(value)}")
        pairs = list(zip(names, value, strict=True))
    out = []
    for name, obj in pairs:
        # paths=False: a step that returns "/data/out.csv" returns that string, as in ClearML
        ref, kind, filename = _artifacts.encode(db, name, obj, what=f"return value {name!r} of step {row.name!r}", paths=False)
        out.append({
            "name": name, "hash": ref.hash, "size": ref.size, "kind": kind, "filename": filename,
            "preview": _artifacts.preview_of(obj),
            "inline": None if ref.inline is None else base64.b64encode(ref.inline).decode("ascii"),
        })
    return out


def _describe(exc: BaseException, script: dict, filename: str) -> str:
    """The status message for a failed step: the exception's type and whole message, plus what to do
    where we know. (A SyntaxError's own lines show the code and a caret: its last line is the message.)"""
    if isinstance(exc, SystemExit):
        return f"the step called sys.exit({exc.code!r}); a component must return (or raise) instead"
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, SyntaxError):
        text = text.splitlines()[-1] if text else ""
    message = text or type(exc).__name__
    if isinstance(exc, NameError) and _raised_in(exc, filename):
        missing = getattr(exc, "name", None)
        module = script.get("caller_imports", {}).get(missing) if missing else None
        if module:
            how = f"import {module}" if module == missing else f"import {module} as {missing}"
            hint = f"add `{how}` inside the function"
        else:
            hint = "import it inside the function, or pass the function it names in helper_functions"
        message += (
            f" (components run as standalone scripts: the caller's module-level imports and globals are not "
            f"there; {hint})"
        )
    elif isinstance(exc, ModuleNotFoundError):
        top = (exc.name or "").partition(".")[0]
        hidden = [folder for folder in script.get("hidden_paths", [])
                  if top and (os.path.isfile(os.path.join(folder, top + ".py")) or os.path.isdir(os.path.join(folder, top)))]
        if hidden:  # it is the project's own module, kept out of reach on purpose
            message += (f" ({top} is a module in {hidden[0]}, beside the pipeline, which this step cannot import "
                        f"because the pipeline has enable_local_imports=False; set it to True, or install {top} as a package)")
        elif not _raised_in(exc, filename):  # not an import of the step's code: unpickling its input data
            message += (f" (raised while loading the step's input data, not by an import in its code: that data was "
                        f"pickled with objects of module {top!r}, which this worker cannot import; make {top} importable "
                        f"here (install it, or keep it beside the pipeline), or pass plain data)")
        else:
            message += " (not installed in the worker's environment: install it there, or declare it in packages=[...])"
    return message


def root_cause(exc: BaseException, filename: str, row: TaskRow) -> dict[str, Any]:
    """What a failure is, for the pipeline to show first: the exception's type and message, and the
    traceback's frames in the user's own code (the step's functions, mapped back to the file and line
    they came from, and the project's modules); library and labpipe frames are left out."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not hide the failure
        message = ""
    from ..source import is_library_path  # imported by warm_up() already, in the worker

    frames = []
    blocks = _block_origins(row)
    for frame, line in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        path, shown = code.co_filename, line
        if path == filename:
            text = linecache.getline(filename, line).strip()
            for start, (origin_file, origin_line) in reversed(blocks):
                if line >= start:
                    if origin_file:
                        path, shown = origin_file, origin_line + line - start
                    break
        elif path.startswith("<") or is_library_path(path):
            continue
        else:
            text = linecache.getline(path, line).strip()
        frames.append({"file": path, "line": shown, "function": code.co_name, "code": text})
    return {"type": type(exc).__name__, "message": message, "frames": frames[-8:]}


def _block_origins(row: TaskRow) -> list[tuple[int, tuple[str, int]]]:
    """(first line in the compiled step source, (file, line) it came from) of each helper and the function."""
    origins = (row.runtime or {}).get("origins") or []
    parts = [*row.script.get("helpers", []), row.script["source"]]
    if len(origins) != len(parts):
        return []
    out, line = [], 1
    for part, origin in zip(parts, origins, strict=True):
        out.append((line, (str(origin[0]), int(origin[1]))))
        line += part.count("\n") + 2  # compile_step joins the blocks with a blank line ("\n\n")
    return out


def _raised_in(exc: BaseException, filename: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            return True
        tb = tb.tb_next
    return False


def _print_traceback(exc: BaseException, filename: str) -> None:
    """The traceback on stderr (the task's console), starting at the step's own code where it can."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
        sys.stderr.write(text)
        sys.stderr.flush()
    except Exception:  # a broken __str__ must not hide the failure itself
        pass


def is_library(module: Any) -> bool:
    """Whether a module is a library's (source.is_library_path: the standard library, site-packages,
    labpipe), not the project's; a module without a file only if it is built in.

    Only those are imported ahead by a warm worker: a project module imported once would go stale
    when the user edits it, and the next task would silently run the old code.
    """
    path = getattr(module, "__file__", None)
    if not path:
        return getattr(module, "__name__", "") in sys.builtin_module_names
    from ..source import is_library_path

    return is_library_path(path)


def is_library_name(top: str) -> bool:
    """Whether top-level module `top` is (or, not imported yet, would be imported from) a library's
    file: what a warm worker may import ahead. Looked up with find_spec, without importing it."""
    if top in NEVER_WARM:
        return False
    if top in sys.modules:
        return is_library(sys.modules[top])
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    origin = spec.origin if spec.origin not in (None, "namespace") else next(iter(spec.submodule_search_locations or []), None)
    if origin in ("built-in", "frozen"):
        return True
    from ..source import is_library_path

    return bool(origin) and is_library_path(origin)


def _new_imports(before: int) -> tuple[list[str], list[str]]:
    """(top-level modules the step imported, library modules a warm worker should import ahead).

    `before` is len(sys.modules) at the start. New modules are the last entries of sys.modules (dicts
    keep insertion order), read from the end: iterating over all of it would touch, and so copy, a
    page per module name inherited from the worker.
    """
    count = len(sys.modules) - before
    if count <= 0:
        return [], []
    new = []
    for name in reversed(sys.modules):
        new.append(name)
        if len(new) == count:
            break
    new = [n for n in new if n not in NEVER_WARM]
    tops = sorted({n.partition(".")[0] for n in new if not n.startswith("_")})
    warm = sorted(
        (n for n in new if not any(part.startswith("_") for part in n.split(".")) and is_library(sys.modules.get(n))),
        key=lambda n: (n.count("."), n),
    )
    return tops, warm


def _stop_own_pool() -> None:
    """A step that started a pool (a pipeline run as a step) stops it: os._exit skips atexit."""
    pool_module = sys.modules.get("labpipe.agent.pool")  # never imported here only to find nothing to stop
    if pool_module is not None:
        pool_module.stop_own_pool()


def _send(fd: int, report: dict) -> None:
    data = json.dumps(report).encode()
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.close(fd)
