"""Function tasks: a Python function stored as source, run by a worker as a standalone script.

`Task.create_function_task(func, ...)` (ClearML's name) records what a remote agent needs and
nothing more: the function's source (decorators stripped) and its helper functions' sources, the
names its return value(s) are stored under, and its keyword arguments. The worker runs that source in
a fresh namespace, exactly as a remote ClearML agent would, so the caller's module-level imports and
globals are not there: a component that forgot an import fails here as it would on a cluster.

Arguments: basic JSON values (numbers, strings, lists and dicts of them) become `kwargs/<arg>`
parameters, editable on a clone; anything else (DataFrames, arrays, objects) is stored as an artifact
of the task itself, named `kwarg.<arg>`, and referenced from the `kwargs_artifacts/<arg>` parameter as
{"task": id, "artifact": name}. A reference to *another* task's artifact (an `ArtifactRef`, or an
`Artifact` from `task.artifacts`) is stored as such, with no copy: that is how pipeline steps pass
results, from the store to the worker, never through the controller.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import logging
import os
import sys
import textwrap
import types
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import artifacts
from . import names as _names
from . import params as _params
from .errors import FunctionSourceError
from .source import is_library_path
from .store import tasks
from .store.db import get_database
from .store.wakeup import poke
from .task_types import task_type_name

if TYPE_CHECKING:
    from .step_options import StepOptions
    from .store.db import Database
    from .store.records import TaskRow

log = logging.getLogger(__name__)

KWARGS_SECTION = "kwargs"
KWARGS_ARTIFACTS_SECTION = "kwargs_artifacts"
KWARG_ARTIFACT_PREFIX = "kwarg."

# A JSON parameter bigger than this is stored as an artifact instead: parameters are meant to be
# read and edited by people, and every task listing reads them.
_MAX_PARAM_JSON = 256 * 1024


@dataclass(frozen=True)
class ArtifactRef:
    """A reference to an artifact of a task, passed as a function task's argument without copying it."""

    task_id: str
    artifact: str

    def as_param(self) -> dict[str, str]:
        return {"task": self.task_id, "artifact": self.artifact}


@dataclass(frozen=True)
class FunctionSource:
    """What a worker needs of a function: its name, its source and what that source imports."""

    name: str
    source: str
    is_async: bool
    folder: str
    imports: tuple[str, ...]
    caller_imports: dict[str, str]
    parameters: frozenset[str] = frozenset()
    takes_any_keyword: bool = False
    signature: str = "()"
    #: (file, line of the `def`) where the source came from: a failure's traceback points there
    origin: tuple[str, int] = ("", 0)


# inspect.getsource re-reads and re-tokenises the file on every call (~1 ms); a pipeline or a
# benchmark creates many tasks from one function, so the extraction is kept per function object.
_cache: weakref.WeakKeyDictionary[Callable, FunctionSource] = weakref.WeakKeyDictionary()
_packages_cache: dict[tuple[str, ...], list[str]] = {}


def function_source(func: Callable) -> FunctionSource:
    """The source a worker runs for `func` (dedented, decorators stripped), cached per function.

    Raises FunctionSourceError naming the function when it has no retrievable `def` source: a lambda,
    a builtin or C function, or a function typed into an interactive interpreter.
    """
    try:
        return _cache[func]
    except (KeyError, TypeError):
        pass
    inner, decorators = unwrap_decorated(func)
    found = _extract(inner) if not decorators else _with_decorators(_extract(inner), inner, decorators)
    try:
        _cache[func] = found
    except TypeError:  # not weak-referenceable: just do not cache
        pass
    return found


def unwrap_decorated(func: Callable) -> tuple[Callable, list[tuple[str, Callable]]]:
    """The user's own function under any decorators, and those of its decorators a worker must apply.

    A component may carry other decorators (`@component()` over `@our_decorator` over `def step`): what
    reaches labpipe is then the decorator's wrapper. The function that runs is the innermost one, named
    after it, decorated again in the worker as in the source, so that the wrapper's behaviour stays,
    as in ClearML. Followed down: `__wrapped__` (functools.wraps), or a function in the wrapper's
    closure when the wrapper's code was made inside one of that function's decorators (a plain closure
    over a helper is not a wrapper). Kept: decorators written as a name or a call of a name that are
    the project's own functions; library decorators (lru_cache, ...) and labpipe's own are left out,
    so the function runs bare under them as before. Returns (func, []) for an undecorated function.
    """
    inner = func
    seen: set[int] = set()
    while id(inner) not in seen:
        seen.add(id(inner))
        below = getattr(inner, "__wrapped__", None)
        if below is None and inspect.isfunction(inner) and inner.__closure__:
            below = next((c for c in _cell_functions(inner) if _made_by_a_decorator_of(inner, c)), None)
        if below is None or not callable(below):
            break
        inner = below
    if inner is func or not inspect.isfunction(inner):
        return func, []
    return inner, _user_decorators(inner)


def _cell_functions(func: types.FunctionType) -> list[types.FunctionType]:
    found = []
    for cell in func.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if inspect.isfunction(value):
            found.append(value)
    return found


def _made_by_a_decorator_of(wrapper: types.FunctionType, inner: types.FunctionType) -> bool:
    return any(wrapper.__code__ in _nested_codes(d.__code__) for _, d in _user_decorators(inner))


def _nested_codes(code: types.CodeType) -> set[types.CodeType]:
    out: set[types.CodeType] = set()
    stack = [code]
    while stack:
        for const in stack.pop().co_consts:
            if isinstance(const, types.CodeType):
                out.add(const)
                stack.append(const)
    return out


def _user_decorators(func: types.FunctionType) -> list[tuple[str, Callable]]:
    """[(decorator expression as written, the decorator function)] of `func`'s own `def`, outermost first,
    for those that are the project's functions (not a library's, not labpipe's)."""
    try:
        text = textwrap.dedent(inspect.getsource(func))
        node = ast.parse(text).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return []
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return []
    kept = []
    for expr in node.decorator_list:
        target = expr.func if isinstance(expr, ast.Call) else expr
        if not isinstance(target, ast.Name):
            continue  # `@PipelineDecorator.component(...)`, `@functools.lru_cache`: not re-applied
        value = func.__globals__.get(target.id)
        if inspect.isfunction(value) and not is_library_path(value.__code__.co_filename):
            kept.append((ast.get_source_segment(text, expr) or target.id, value))
    return kept


def _with_decorators(inner: FunctionSource, func: types.FunctionType, decorators: list[tuple[str, Callable]]) -> FunctionSource:
    """`inner`'s source decorated as written, after the decorators' own definitions (and the modules
    their code names at its module's level, imported), so that the worker runs what the caller would."""
    parts, imports = [], {}
    for _, decorator in decorators:
        found = _extract(decorator)
        imports.update(found.caller_imports)
        parts.append(found.source)
    header = "".join(f"import {module}\n" if alias == module else f"import {module} as {alias}\n"
                     for alias, module in sorted(imports.items()) if "." not in alias)
    decorated = "".join(f"@{text}\n" for text, _ in decorators) + inner.source
    source = header + ("\n" if header else "") + "\n\n".join([*parts, decorated])
    tree = ast.parse(source)
    return dataclasses.replace(inner, source=source, imports=tuple(dict.fromkeys(_imported_modules(tree))),
                               caller_imports={**imports, **inner.caller_imports})


def local_import_folders(folder: str) -> list[str]:
    """The folders a step imports the project's own modules from (enable_local_imports), in order.

    folder: the folder of the step function's file (``FunctionSource.folder``). Then comes the pipeline
    script's folder (that of ``__main__.__file__``, which Python puts first on the script's own
    sys.path): a component in `comps/steps.py` may import `utils.py` that sits beside the script. A
    worker forked from the script's process would inherit that folder, but a fresh interpreter or a
    daemon would not, so it is recorded on the task. The cache key reads local modules from these same
    folders (``source.find_local_modules``), so that it covers exactly what the step will import.
    """
    script_folder = _script_folder(getattr(sys.modules.get("__main__"), "__file__", None))
    return [folder] if script_folder in (None, folder) else [folder, script_folder]


@functools.lru_cache(maxsize=8)
def _script_folder(main_file: str | None) -> str | None:
    # Cached: every step launch asks, and deciding whether a folder is a library's resolves its path.
    if not main_file:
        return None  # an interactive session or a notebook: only the function's own folder
    folder = os.path.dirname(os.path.abspath(main_file))
    # `python -m pytest` runs a library's __main__, in site-packages: no project module lives there.
    return None if is_library_path(folder) else folder


def _extract(func: Callable) -> FunctionSource:
    label = getattr(func, "__qualname__", None) or repr(func)
    fix = "define it with `def` in a .py file (or a notebook cell) so its source can be read and run by a worker"
    if not inspect.isfunction(func):
        raise FunctionSourceError(
            f"cannot make a function task from {label!r} ({type(func).__name__}): only Python functions have "
            f"source a worker can run; wrap it: {fix}"
        )
    if func.__name__ == "<lambda>":
        raise FunctionSourceError(f"cannot make a function task from a lambda ({label}): {fix}")
    try:
        raw = inspect.getsource(func)
    except (OSError, TypeError) as exc:
        raise FunctionSourceError(f"cannot read the source of function {label!r} ({exc}); {fix}") from None
    text = textwrap.dedent(raw)
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise FunctionSourceError(f"the source of function {label!r} does not parse ({exc.msg}); {fix}") from None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name != func.__name__:
        raise FunctionSourceError(f"the source found for function {label!r} is not its `def`; {fix}")
    # node.lineno is the `def` line, after any decorators: the worker runs the bare function.
    lines = text.splitlines(keepends=True)
    source = "".join(lines[node.lineno - 1:])
    if not source.endswith("\n"):
        source += "\n"
    filename = inspect.getsourcefile(func) or func.__code__.co_filename
    try:
        first = inspect.getsourcelines(func)[1]
    except (OSError, TypeError):
        first = 1
    signature = inspect.signature(func)
    folder = os.path.dirname(os.path.abspath(filename)) if filename and not filename.startswith("<") else os.getcwd()
    return FunctionSource(
        name=func.__name__,
        source=source,
        is_async=isinstance(node, ast.AsyncFunctionDef),
        folder=folder,
        imports=tuple(dict.fromkeys(_imported_modules(tree))),
        caller_imports=_caller_imports(func),
        parameters=frozenset(signature.parameters),
        takes_any_keyword=any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()),
        signature=str(signature),
        origin=(os.path.abspath(filename) if filename and not filename.startswith("<") else (filename or ""),
                first + node.lineno - 1),
    )


def _imported_modules(tree: ast.AST) -> list[str]:
    """Absolute dotted modules imported anywhere in the source (the worker imports them ahead of a fork)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def _caller_imports(func: types.FunctionType) -> dict[str, str]:
    """Global names the function uses that are modules in its defining module: {'pd': 'pandas'}.

    They will not exist on the worker; knowing them lets the error say `import pandas as pd`.
    """
    names: set[str] = set()
    stack = [func.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    found = {}
    for name in sorted(names):
        value = func.__globals__.get(name)
        if isinstance(value, types.ModuleType):
            found[name] = value.__name__
    return found


def is_basic(value: Any, depth: int = 0) -> bool:
    """Whether a value round-trips through a JSON parameter unchanged (and is small enough to be one)."""
    if depth > 20:
        return False
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return type(value) in (int, float)  # not numpy scalars or IntEnum members
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return all(is_basic(v, depth + 1) for v in value)
    if isinstance(value, dict) and type(value) is dict:
        return all(isinstance(k, str) and is_basic(v, depth + 1) for k, v in value.items())
    return False


def _reference(value: Any) -> ArtifactRef | None:
    if isinstance(value, ArtifactRef):
        return value
    from .artifacts import Artifact

    if isinstance(value, Artifact):
        return ArtifactRef(value.task_id, value.name)
    return None


def _packages(packages: Sequence[str] | str | None, sources: tuple[str, ...]) -> list[str]:
    """Declared requirements normalised, or those detected from the sources' imports (cached)."""
    # The checker lives with the worker that enforces it; imported lazily so `import labpipe` stays light.
    from . import requirements

    if packages is not None:
        return requirements.parse_requirements(packages)
    if sources not in _packages_cache:
        found: list[str] = []
        for source in sources:
            found += requirements.detect_packages(source)
        _packages_cache[sources] = sorted(set(found), key=str.lower)
    return list(_packages_cache[sources])


def build_function_task(
    func: Callable,
    kwargs: dict[str, Any],
    options: StepOptions,
    *,
    func_name: str | None = None,
    project: str | None = None,
    parent: str | None = None,
    retries: int = 0,
    cache_key: str | None = None,
    queue: str | None = None,
    local_imports: bool = True,
    db: Database | None = None,
) -> TaskRow:
    """Create the task (status 'created', or 'queued' on `queue`) that runs `func(**kwargs)` on a
    worker, and return its row. `Task.create_function_task` and pipeline function steps both make
    their tasks here.

    options: the step's options (`StepOptions`): return_values, helper_functions, task_type,
        task_name, packages, docker*, repo*, working_dir and tags are used here.
    func_name: a name for the function within the task (default: its `__name__`).
    project, parent: the task's project and parent task. retries: how many times a failed run is
        re-queued. cache_key: recorded for later cache lookups.
    queue: enqueue the task there as it is created (one transaction instead of create + enqueue),
        unless arguments must be uploaded first.
    local_imports: put the function's folder and the pipeline script's on the task's sys.path
        (``local_import_folders``), so modules beside the script import (ClearML's
        enable_local_imports); False hides them, even from a worker that inherited them.
    db: the store (default: the current one).
    """
    main = function_source(func)
    helpers = [function_source(h) for h in options.helper_functions]
    label = f"function task {options.task_name or func_name or main.name!r}"
    _check_call(main, kwargs, options, label, project, queue)
    params, objects = _split_arguments(kwargs, label)
    db = db or get_database()
    row = tasks.create_task(
        db,
        name=options.task_name or func_name or main.name,
        project=project or "",
        type=task_type_name(options.task_type),
        parent=parent,
        script=_script(main, helpers, options, func_name, local_imports),
        tags=list(options.tags),
        retries_left=max(0, int(retries or 0)),
        params=params,
        cache_key=cache_key,
        # where each block of the worker's source came from (helpers first, as the worker joins them),
        # so a failure's traceback names the user's file and line; kept out of `script`, which task-step
        # cache keys hash
        runtime={"origins": [list(f.origin) for f in (*helpers, main)]},
        # queued at creation only when nothing remains to upload: a worker could claim it at once
        queue=queue if queue is not None and not objects else None,
    )
    if objects:
        _upload_arguments(db, row.id, objects)
        if queue is not None:
            row = tasks.enqueue(db, row.id, queue)
    if queue is not None:
        poke(db.root, queue)  # a few syscalls: wakes an idle worker of that queue at once
    return row


def _check_call(main: FunctionSource, kwargs: dict, options: StepOptions, label: str, project: str | None,
                queue: str | None) -> None:
    """Refuse, before anything is stored, what would make a broken task: bad names, unknown arguments."""
    names = list(options.return_values)
    for name in names:
        _names.check_artifact_name(name, kind="return value", where=label)
    if len(set(names)) != len(names):
        raise ValueError(f"return_values must be distinct names, got {options.return_values!r}")
    unknown = set(kwargs) - main.parameters
    if unknown and not main.takes_any_keyword:
        raise TypeError(f"function {main.name!r} has no parameter(s) {', '.join(sorted(unknown))}; it takes {main.signature}")
    for value, check in ((options.task_name, "task"), (project, "project")):
        if value is not None:
            _names.check_label(value, kind=check, where=label)
    if queue is not None:
        _names.check_queue_name(queue, where=label)


def _script(main: FunctionSource, helpers: list[FunctionSource], options: StepOptions, func_name: str | None,
            local_imports: bool) -> dict[str, Any]:
    """The task's definition: what the worker runs and where (sources, returns, packages, folders, repo)."""
    sources = (main.source, *(h.source for h in helpers))
    script: dict[str, Any] = {
        "kind": "function",
        "function_name": main.name,
        "func_name": func_name or main.name,
        "source": main.source,
        "helpers": [h.source for h in helpers],
        "is_async": main.is_async,
        "return_values": list(options.return_values),
        "packages": _packages(options.packages, sources),
        "imports": list(dict.fromkeys(m for f in (main, *helpers) for m in f.imports)),
        "caller_imports": main.caller_imports,
        "working_dir": (os.path.abspath(options.working_dir) if options.working_dir
                        else (main.folder if local_imports else os.getcwd())),
        "sys_path": local_import_folders(main.folder) if local_imports else [],
        "hidden_paths": [] if local_imports else local_import_folders(main.folder),
    }
    for key in ("docker", "docker_args", "docker_bash_setup_script"):
        if getattr(options, key):
            script[key] = getattr(options, key)
    if options.repo:
        from .repo import resolve_repo

        pinned = resolve_repo(options.repo, options.repo_branch, options.repo_commit)
        script.update(repo=pinned["repo"], repo_branch=pinned["branch"], repo_commit=pinned["commit"])
    return script


def _split_arguments(kwargs: dict[str, Any], label: str) -> tuple[list[tuple], dict[str, Any]]:
    """(parameter rows, objects to upload): references and small JSON values become parameters,
    anything else is uploaded as an artifact of the task once it exists (its name checked now)."""
    params, objects = [], {}
    for arg, value in kwargs.items():
        ref = _reference(value)
        if ref is not None:
            params.append(_param(KWARGS_ARTIFACTS_SECTION, arg, ref.as_param()))
        elif is_basic(value) and len(json.dumps(value)) <= _MAX_PARAM_JSON:
            params.append(_param(KWARGS_SECTION, arg, value))
        else:
            objects[arg] = value
    for arg in objects:
        _names.check_artifact_name(KWARG_ARTIFACT_PREFIX + arg, where=f"{label}, argument {arg!r}")
    return params, objects


def _upload_arguments(db: Database, task_id: str, objects: dict[str, Any]) -> None:
    """Store each object argument as an artifact of the task and point its parameter at it."""
    refs = []
    for arg, value in objects.items():
        name = KWARG_ARTIFACT_PREFIX + arg
        artifacts.upload(db, task_id, name, value)
        refs.append(_param(KWARGS_ARTIFACTS_SECTION, arg, ArtifactRef(task_id, name).as_param()))
    tasks.set_params(db, task_id, refs)


def _param(section: str, name: str, value: Any) -> tuple[str, str, str, str, str]:
    value_json, type_name = _params.encode(value)
    return section, name, value_json, type_name, ""


__all__ = ["ArtifactRef", "FunctionSourceError", "build_function_task", "function_source"]
