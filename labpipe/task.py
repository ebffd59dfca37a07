"""The ClearML-shaped task API over the store: `Task`, `TaskTypes`.

A Task object is a thin handle: an id plus the row it last read. Every getter that matters
(`get_status()`, `artifacts`, parameters) reads the store, so several processes can work on one
task. Status changes are checked (`IllegalTransition` names both states).
"""

from __future__ import annotations

import contextvars
import enum
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import artifacts as _artifacts
from . import frameworks
from . import names as _names
from . import params as _params
from . import status as _status
from .config import LEASE_SECONDS
from .connected import ConnectedDict, watch_attributes
from .errors import TaskNotFound
from .offline import install_on
from .session import LocalSession
from .store import outputs, tasks
from .store.db import Database, get_database
from .store.records import TaskRow
from .task_env import ENV_TASK_ID
from .task_types import TaskTypes, task_type_name

# The pipeline run whose logic this code is part of sets its controller task here (per thread and
# context: parallel and nested pipelines each see their own), so Task.current_task() in the logic is
# the controller in every mode, as in ClearML where the controller is the process's task.
context_task: contextvars.ContextVar[Task | None] = contextvars.ContextVar("labpipe_context_task", default=None)


def _script_packages(packages: Any, requirements_file: Any, source: str | None) -> list[str] | None:
    """Task.create's requirements: declared, read from a requirements file, or detected from the script."""
    from . import requirements  # lazily: `import labpipe` stays light

    found: list[str] = []
    if packages is True:
        if source is None:
            raise ValueError("Task.create(packages=True) detects the packages a script imports, but no script= was given; "
                             "pass script=..., or list the packages")
        found += requirements.detect_packages(source)
    elif isinstance(packages, str):
        found += requirements.parse_requirements([packages])
    elif packages not in (None, False):
        if not isinstance(packages, Sequence):
            raise TypeError(f"Task.create(packages=...) takes a list of requirement strings or True, not "
                            f"{type(packages).__name__} {packages!r}")
        found += requirements.parse_requirements(list(packages))
    if requirements_file is not None:
        found += requirements.parse_requirements(requirements_file)
    return list(dict.fromkeys(found)) or None


class Task:
    """A labpipe task (ClearML's `Task`): parameters, artifacts, metrics, status and a definition of what to run.

    `db` is the store the task lives in (a `labpipe.store.db.Database`), for code that calls the
    store's verbs on it.
    """

    TaskTypes = TaskTypes
    _current: Task | None = None
    _current_lock = threading.Lock()

    def __init__(self, row: TaskRow, db: Database | None = None):
        self._row = row
        self.db = db or get_database()
        self._session: LocalSession | None = None

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.project}/{self.name} {self._row.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- creating and finding ------------------------------------------------------------

    @classmethod
    def create(
        cls,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: str | TaskTypes | None = None,
        script: str | os.PathLike | None = None,
        argparse_args: Sequence[tuple[str, Any]] | Mapping[str, Any] | None = None,
        working_directory: str | None = None,
        packages: Sequence[str] | str | bool | None = None,
        requirements_file: str | os.PathLike | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        repo: str | None = None,
        branch: str | None = None,
        commit: str | None = None,
        tags: Sequence[str] | None = None,
        comment: str = "",
    ) -> Task:
        """Create a new task in status 'created' (nothing runs until it is enqueued).

        project_name, task_name, task_type: as in ClearML.
        script: a Python script this task runs when enqueued; `argparse_args` ([(name, value)] or a dict)
        become its `Args/` parameters and are passed as `--name value` on its command line.
        packages: requirement strings (`["pandas>=2", "scikit-learn"]`), or True to detect them from the
        script's imports, pinned to the versions installed here (as ClearML does for a local script).
        requirements_file: a requirements.txt whose requirements are added to `packages`.
        docker, docker_args, docker_bash_setup_script, repo, branch, commit: recorded requirements for
        the worker that runs it.
        """
        _check_task_names(task_name, project_name, "Task.create")
        definition: dict[str, Any] = {}
        if script is not None:
            path = Path(script).expanduser().absolute()
            if not path.is_file():
                raise FileNotFoundError(f"Task.create(script={str(script)!r}): no such file; pass the path of a Python script")
            definition = {
                "kind": "script",
                "entry_point": str(path),
                "working_dir": str(Path(working_directory).absolute()) if working_directory else str(path.parent),
                "source": path.read_text(encoding="utf-8", errors="replace"),
            }
        for key, value in (
            ("packages", _script_packages(packages, requirements_file, definition.get("source"))),
            ("docker", docker), ("docker_args", docker_args), ("docker_bash_setup_script", docker_bash_setup_script),
            ("repo", repo), ("repo_branch", branch), ("repo_commit", commit),
        ):
            if value:
                definition[key] = value
        items = dict(argparse_args) if argparse_args else {}
        row = tasks.create_task(
            get_database(),
            name=task_name or (Path(script).stem if script else "untitled"),
            project=project_name or "",
            type=task_type_name(task_type),
            script=definition,
            tags=list(tags or ()),
            comment=comment,
            params=[_param_row(f"Args/{k}", v) for k, v in items.items()],
        )
        return cls(row)

    @classmethod
    def create_function_task(
        cls,
        func: Any,
        func_name: str | None = None,
        task_name: str | None = None,
        *,
        project_name: str | None = None,
        task_type: Any = None,
        return_values: Sequence[str] | str | None = ("return_object",),
        helper_functions: Sequence[Any] = (),
        packages: Sequence[str] | str | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        tags: Sequence[str] | None = None,
        parent: str | None = None,
        retry_on_failure: int = 0,
        **kwargs: Any,
    ) -> Task:
        """A task (status 'created') that runs `func(**kwargs)` on a worker once enqueued, as a
        standalone script (ClearML's name).

        func: a function defined with `def` in a file or notebook cell; it runs as a standalone script,
            so it must import what it uses inside its body.
        func_name: a name for the function within the task (default: its `__name__`).
        task_name, project_name, task_type, tags, parent: as in ClearML (task_name defaults to func_name).
        return_values: the artifact name(s) the return value is stored under: one name stores the whole
            value, several unpack a returned tuple (ClearML's default: 'return_object'); () stores nothing.
        helper_functions: other functions the worker defines next to `func` (their source is stored too).
        packages: requirements (list or requirements.txt path); None detects them from the imports.
        docker, docker_args, docker_bash_setup_script, repo, repo_branch, repo_commit: recorded for the
            worker (a local `repo` runs the task in a worktree at the recorded commit).
        retry_on_failure: how many times a failed run is re-queued.
        **kwargs: the function's arguments (basic values become editable parameters, anything else an
            artifact of the task; see `labpipe.function_task`).
        """
        from .function_task import build_function_task
        from .step_options import StepOptions

        options = StepOptions.collect(dict(
            task_type=task_type, task_name=task_name, return_values=() if return_values is None else return_values,
            helper_functions=helper_functions, packages=packages, docker=docker, docker_args=docker_args,
            docker_bash_setup_script=docker_bash_setup_script, repo=repo, repo_branch=repo_branch,
            repo_commit=repo_commit, tags=tags,
        ))
        db = get_database()
        row = build_function_task(func, kwargs, options, func_name=func_name, project=project_name, parent=parent,
                                  retries=retry_on_failure, db=db)
        return cls(row, db)

    @classmethod
    def init(
        cls,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: str | TaskTypes | None = None,
        tags: Sequence[str] | None = None,
        capture_output: bool = True,
        auto_connect_frameworks: bool | dict = True,
        **_ignored: Any,
    ) -> Task:
        """The running script's own task (ClearML's `Task.init`).

        auto_connect_frameworks: as ClearML's, True, False or {framework: bool}: what joblib and xgboost
        save becomes an output model of the current task (see labpipe/frameworks.py).

        Outside a worker: creates a task that is in_progress now, completed when the process exits
        normally, failed (with the traceback) on an uncaught exception; stdout/stderr are kept as its
        console log. Under a worker running an enqueued task: returns that task, with the parameters
        (possibly overridden on a clone) that `connect()` then applies.
        """
        _check_task_names(task_name, project_name, "Task.init")
        frameworks.configure(auto_connect_frameworks)
        with cls._current_lock:
            if cls._current is not None:
                return cls._current
            enqueued = os.environ.get(ENV_TASK_ID)
            if enqueued:
                task = cls.get_task(task_id=enqueued)
                task._remote = True
            else:
                owner = f"local:{socket.gethostname()}:{os.getpid()}"
                row = tasks.create_task(
                    get_database(),
                    name=task_name or Path(sys.argv[0] or "script").stem or "script",
                    project=project_name or "",
                    type=task_type_name(task_type),
                    tags=list(tags or ()),
                    script=_script_definition(cls._added_requirements),
                    status=_status.IN_PROGRESS,
                    owner=owner,
                    lease_until=time.time() + LEASE_SECONDS,
                )
                task = cls(row)
                task._session = LocalSession(task, owner, capture_output)
            cls._current = task
            return task

    @classmethod
    def forget_current(cls) -> None:
        """This process is no longer the process of the task it had (a forked worker's child that is
        now a step's process): `current_task()` looks again."""
        cls._current = None

    @classmethod
    def current_task(cls) -> Task | None:
        """The task this code runs in: a component's step task on a worker, a pipeline's controller
        task in its logic, or the `Task.init` task."""
        in_pipeline = context_task.get()
        if in_pipeline is not None:
            return in_pipeline
        if cls._current is not None:
            return cls._current
        enqueued = os.environ.get(ENV_TASK_ID)
        if enqueued:
            try:
                cls._current = cls.get_task(task_id=enqueued)
                cls._current._remote = True
            except TaskNotFound:
                return None
        return cls._current

    @staticmethod
    def running_locally() -> bool:
        """False inside a task a labpipe worker runs (an enqueued task, a pipeline step), True elsewhere."""
        return not os.environ.get(ENV_TASK_ID)

    def is_main_task(self) -> bool:
        """Whether this is the process's main task: the one `Task.init` returned (or a worker runs)."""
        return Task._current is not None and Task._current.id == self.id

    def execute_remotely(self, queue_name: str | None = None, clone: bool = False, exit_process: bool = True) -> Task | None:
        """Stop running here and leave the task for a worker, as ClearML's `execute_remotely`.

        Run locally (a `Task.init` script), the task becomes a draft (status created) holding its script,
        parameters and requirements: a template that `Task.clone` and `PipelineController.add_step(
        base_task_project=, base_task_name=)` can use. queue_name: also enqueue it there (the queue
        must exist: `labpipe agent --queue NAME` makes and serves one). clone: leave this task as it is and
        enqueue a clone of it instead. exit_process: end the process (status 0) at once. Under a worker
        (the enqueued task running), it does nothing and the script goes on.

        Returns the draft (or the enqueued clone) when the process goes on; None under a worker.
        """
        if not Task.running_locally():
            return None
        if not clone and not exit_process:
            raise ValueError("execute_remotely(clone=False, exit_process=False): the task would be run here and by a "
                             "worker at once; pass clone=True to enqueue a copy, or let the process exit")
        if queue_name is not None:
            _names.check_queue_name(queue_name, where="execute_remotely")
            if not tasks.queue_exists(self.db, queue_name):
                from .errors import QueueError

                raise QueueError(f"execute_remotely: there is no queue named {queue_name!r} in the store {self.db.root}; "
                                 f"start a worker for it (labpipe agent --queue {queue_name}), which creates it, or use "
                                 "an existing queue (labpipe queues)")
        if clone:
            target = Task.clone(self)
        else:
            self._end_session()
            self._row = tasks.set_status(self.db, self.id, _status.CREATED, force=True)
            target = self
        if queue_name is not None:
            Task.enqueue(target, queue_name=queue_name)
        where = f"enqueued on {queue_name!r}" if queue_name else "left as a draft (status created)"
        # ClearML prints this too: the process may be about to end, so nothing else could show it
        print(f"labpipe: task {target.id} ({target.name}) {where}; see it with `labpipe show {target.id[:8]}`", file=sys.stderr)
        if exit_process:
            if Task._current is self:
                Task._current = None
            sys.exit(0)
        return target

    #: requirements added with `Task.add_requirements` before `Task.init`, recorded on the task it creates
    _added_requirements: list[str] = []

    @classmethod
    def add_requirements(cls, package_name: str, package_version: str | None = None) -> None:
        """Add a requirement ('pandas', or package_version '>=2' / '2.2.0') to the task the next
        `Task.init` creates; a worker checks it before running the task, as it checks `packages`.
        package_name may also be a requirements file's path."""
        from .requirements import parse_requirements

        if os.path.isfile(str(package_name)) and package_version is None:
            cls._added_requirements.extend(parse_requirements(package_name))
            return
        version = str(package_version or "").strip()
        if version and version[0].isdigit():
            version = "==" + version
        cls._added_requirements.extend(parse_requirements([f"{package_name}{version}"]))

    @classmethod
    def get_task(
        cls,
        task_id: str | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        allow_archived: bool = True,
    ) -> Task:
        """A task by id (or a unique prefix of one, 4+ characters, as git takes), or the newest task with
        this name (in this project, if given).

        Raises TaskNotFound naming what was looked for (an ambiguous prefix: its candidates).
        """
        db = get_database()
        if task_id:
            return cls(tasks.get_task(db, str(task_id)), db)
        if not task_name:
            raise TaskNotFound("Task.get_task needs task_id, or task_name (with project_name)")
        rows = tasks.find_tasks(db, project=project_name, name=task_name, include_archived=allow_archived, limit=1)
        if not rows:
            where = f" in project {project_name!r}" if project_name is not None else ""
            raise TaskNotFound(f"no task named {task_name!r}{where} in the store {db.root}")
        return cls(rows[0], db)

    @classmethod
    def get_tasks(
        cls,
        task_ids: Sequence[str] | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        tags: Sequence[str] | None = None,
        allow_archived: bool = True,
        task_filter: Mapping[str, Any] | None = None,
        status: Sequence[str] | str | None = None,
        task_type: Sequence[str] | str | None = None,
    ) -> list[Task]:
        """Tasks matching all filters, newest first.

        tags: any of these ('-tag' excludes). task_filter: ClearML's dict form, e.g.
        {"status": ["completed"], "type": ["training"], "parent": id}. allow_archived=False hides archived tasks.
        """
        task_filter = dict(task_filter or {})
        status = status if status is not None else task_filter.get("status")
        task_type = task_type if task_type is not None else task_filter.get("type")
        db = get_database()
        rows = tasks.find_tasks(
            db,
            ids=list(task_ids) if task_ids is not None else None,
            project=project_name,
            name=task_name,
            status=[status] if isinstance(status, str) else status,
            type=[task_type_name(t) for t in ([task_type] if isinstance(task_type, (str, TaskTypes)) else task_type or [])],
            tags=list(tags) if tags else None,
            parent=task_filter.get("parent"),
            include_archived=allow_archived,
        )
        return [cls(r, db) for r in rows]

    @classmethod
    def clone(
        cls,
        source_task: Task | str,
        name: str | None = None,
        comment: str | None = None,
        parent: Task | str | None = None,
        project: str | None = None,
    ) -> Task:
        """A new 'created' task with the source's definition, parameters and tags, never its outputs.

        name: the clone's name (default: the source's). parent: the clone's parent task (a Task or an
        id); by default, as in ClearML, the source's parent, or the source itself when it has none.
        """
        _check_task_names(name, project, "Task.clone")
        db = get_database()
        source = source_task if isinstance(source_task, Task) else cls.get_task(task_id=str(source_task))
        source_id = source.id
        if isinstance(parent, Task):
            parent = parent.id
        elif parent is None:
            parent = source.reload().parent or source_id
        row = tasks.clone_task(db, source_id, name=name, parent=parent, project=project)
        if comment is not None:
            tasks.update_task(db, row.id, comment=comment)
            row.comment = comment
        return cls(row, db)

    @classmethod
    def enqueue(cls, task: Task | str, queue_name: str | None = None, priority: int = 0, **_ignored: Any) -> Task:
        """Put a task on a queue for a worker to run (default queue: 'default')."""
        if queue_name is not None:
            _names.check_queue_name(queue_name, where="Task.enqueue")
        task = task if isinstance(task, Task) else cls.get_task(task_id=task)
        task._row = tasks.enqueue(task.db, task.id, queue_name or "default", priority)
        from .store.wakeup import poke  # a few syscalls: wakes an idle worker of that queue at once

        poke(task.db.root, queue_name or "default")
        return task

    @classmethod
    def dequeue(cls, task: Task | str) -> bool:
        """Take a queued task off its queue (back to 'created'); False if it was not queued."""
        task = task if isinstance(task, Task) else cls.get_task(task_id=task)
        done = tasks.dequeue(task.db, task.id)
        task.reload()
        return done

    # -- identity ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._row.id

    @property
    def name(self) -> str:
        return self._row.name

    @property
    def project(self) -> str:
        return self._row.project

    def get_project_name(self) -> str:
        return self._row.project

    @property
    def task_type(self) -> str:
        return self._row.type

    @property
    def parent(self) -> str | None:
        return self._row.parent

    @property
    def comment(self) -> str:
        return self._row.comment

    @property
    def status(self) -> str:
        """The status as last read; `get_status()` reads it fresh."""
        return self._row.status

    @property
    def data(self) -> TaskRow:
        """The task's row as last read (times, queue, worker, definition)."""
        return self._row

    def reload(self) -> Task:
        """Re-read this task from the store."""
        self._row = tasks.get_task(self.db, self.id)
        return self

    def get_status(self) -> str:
        return self.reload()._row.status

    def get_status_message(self) -> str:
        return self.reload()._row.status_message

    def set_name(self, name: str) -> None:
        _names.check_label(name, kind="task", where=f"task {self.id}: set_name", allow_empty=False)
        tasks.update_task(self.db, self.id, name=name)
        self._row.name = name

    def set_comment(self, comment: str) -> None:
        tasks.update_task(self.db, self.id, comment=comment)
        self._row.comment = comment

    def set_parent(self, parent: Task | str | None) -> None:
        pid = parent.id if isinstance(parent, Task) else parent
        tasks.update_task(self.db, self.id, parent=pid)
        self._row.parent = pid

    # -- parameters ----------------------------------------------------------------------

    def set_parameters(self, *args: Mapping[str, Any], **kwargs: Any) -> None:
        """Set parameters from a dict of 'Section/name' keys (no section: 'General/'), replacing all others.

        Types are kept: `{"Args/lr": 0.1, "Args/epochs": 3}` reads back as a float and an int with
        `get_parameters(cast=True)` (and as '0.1' and '3' without it, as in ClearML). A text value for a
        parameter that has another type keeps that type, as in ClearML, so the recipe
        `p = t.get_parameters(); p["Args/lr"] = "0.2"; t.set_parameters(p)` changes no type.
        """
        self._put_parameters(_merge(args, kwargs), clear=True)

    def update_parameters(self, *args: Mapping[str, Any], **kwargs: Any) -> None:
        """Set or change these parameters, keeping the others (types as in `set_parameters`)."""
        self._put_parameters(_merge(args, kwargs))

    def set_parameter(self, name: str, value: Any, description: str | None = None, value_type: Any = None) -> None:
        """Set one parameter ('Section/name'); value_type (a type or its name) casts a text value to it."""
        if value_type is not None and isinstance(value, str):
            type_name = value_type if isinstance(value_type, str) else getattr(value_type, "__name__", str(value_type))
            value = _params.keep_type(value, type_name, name)
        self._put_parameters({name: value}, description=description or "")

    def _put_parameters(self, values: Mapping[str, Any], clear: bool = False, description: str = "") -> None:
        types = {(r["section"], r["name"]): r["type"] for r in tasks.get_params(self.db, self.id)}
        rows = []
        for key, value in values.items():
            section, name = _params.split_key(key)
            if isinstance(value, str) and (section, name) in types:
                value = _params.keep_type(value, types[(section, name)], key)
            rows.append(_param_row(key, value, description))
        tasks.set_params(self.db, self.id, rows, clear=clear)

    def get_parameters(self, backwards_compatibility: bool = True, cast: bool = False) -> dict[str, Any]:
        """All parameters as {'Section/name': value}.

        As in ClearML, the values come back as text (None as '', lists and dicts as JSON) unless
        cast=True, which returns them with the type they were set with.
        """
        out = {}
        for row in tasks.get_params(self.db, self.id):
            value = _params.decode(row["value"], row["type"])
            out[f"{row['section']}/{row['name']}"] = value if cast else _params.as_text(value)
        return out

    def get_parameter(self, name: str, default: Any = None, cast: bool = False) -> Any:
        """One parameter ('Section/name'; no section: 'General/'), as text unless cast=True; `default` if unset."""
        section, pname = _params.split_key(name)
        return self.get_parameters(cast=cast).get(f"{section}/{pname}", default)

    def get_parameters_as_dict(self, cast: bool = False) -> dict[str, dict[str, Any]]:
        """Parameters nested by section: {'Args': {'lr': '0.1'}} (typed values with cast=True)."""
        out: dict[str, dict[str, Any]] = {}
        for key, value in self.get_parameters(cast=cast).items():
            section, name = key.split("/", 1)
            out.setdefault(section, {})[name] = value
        return out

    def delete_parameter(self, name: str) -> None:
        tasks.delete_params(self.db, self.id, [_params.split_key(name)])

    def connect(self, mutable: Any, name: str | None = None) -> Any:
        """Tie a dict (or an object's public attributes) to parameter section `name` (default 'General');
        an InputModel or OutputModel is connected as that model (see `InputModel.connect`).

        Run locally, the values are recorded on the task. Run by a worker (an enqueued or cloned
        task), the stored values, possibly overridden, are written back into `mutable`, as ClearML does.
        """
        from .models import InputModel, OutputModel

        if isinstance(mutable, (InputModel, OutputModel)):  # ClearML: task.connect(model) connects the model
            mutable.connect(self, name)
            return mutable
        section = name or _params.DEFAULT_SECTION
        is_dict = isinstance(mutable, dict)
        current = dict(mutable) if is_dict else {k: v for k, v in vars(mutable).items() if not k.startswith("_")}
        if getattr(self, "_remote", False):
            stored = self.get_parameters_as_dict(cast=True).get(section, {})
            for key, example in current.items():
                if key in stored:
                    value = _params.cast_like(stored[key], example, f"{section}/{key}")
                    if is_dict:
                        mutable[key] = value
                    else:
                        setattr(mutable, key, value)
            missing = {k: v for k, v in current.items() if k not in stored}
            if missing:  # recorded unless someone set them meanwhile
                tasks.set_params(self.db, self.id, [_param_row(f"{section}/{k}", v) for k, v in missing.items()], only_missing=True)
        else:
            self.update_parameters({f"{section}/{k}": v for k, v in current.items()})
        # Later changes are recorded too, as ClearML's connected dicts and objects do.
        def record(key: str, value: Any) -> None:
            self.set_parameter(f"{section}/{key}", value)

        def forget(key: str) -> None:
            self.delete_parameter(f"{section}/{key}")

        if is_dict:
            return ConnectedDict(mutable, record, forget)
        return watch_attributes(mutable, record)

    # -- configurations ------------------------------------------------------------------

    def connect_configuration(self, configuration: Any, name: str | None = None, description: str | None = None,
                              ignore_remote_overrides: bool = False) -> Any:
        """Record a configuration on the task: a dict (or list), or the path of a configuration file
        (`str` or `Path`), under `name` (default 'General').

        Returns the dict (changes to it are recorded), or a path to a local file with the content. Run
        by a worker, the stored configuration (a clone's edit, a pipeline's `configuration_overrides`)
        replaces the dict's content, or is the content of the returned file, as ClearML does.
        """
        key = _names.check_label(name or _params.DEFAULT_SECTION, kind="configuration", where="connect_configuration",
                                 allow_empty=False)
        remote = getattr(self, "_remote", False) and not ignore_remote_overrides
        stored = self.get_configurations().get(key)
        if isinstance(configuration, (dict, list)):
            if remote and stored is not None:
                value = _configuration_value(stored, key)
                if isinstance(configuration, dict) and isinstance(value, dict):
                    configuration.clear()
                    configuration.update(value)
                elif isinstance(configuration, list) and isinstance(value, list):
                    configuration[:] = value
                else:
                    configuration = value
            else:
                self.set_configuration_object(key, config_dict=configuration, description=description)
            if isinstance(configuration, dict):
                def store(*_: Any) -> None:
                    self.set_configuration_object(key, config_dict=dict(connected), description=description)

                connected = ConnectedDict(configuration, store, store)
                return connected
            return configuration
        if not isinstance(configuration, (str, os.PathLike)):
            raise ValueError(f"connect_configuration({name!r}): give a dict, a list, or the path of a configuration file, "
                             f"not {type(configuration).__name__}")
        path = Path(configuration).expanduser()
        if remote and stored is not None:
            from . import contained

            folder = contained.private_dirs(self.db.root, ["cache", "configurations"])
            out = folder / contained.file_name_for(f"{self.id}-{key}", path.suffix, fallback="configuration")
            text = stored["value"] if isinstance(stored["value"], str) else json.dumps(stored["value"], indent=2)
            contained.replace_file(out, text.encode())
            return str(out) if isinstance(configuration, str) else type(configuration)(out)
        if not path.is_file():
            raise ValueError(f"connect_configuration({str(configuration)!r}): no such file; give the path of a "
                             "configuration file, or a dict")
        text = path.read_text(encoding="utf-8", errors="replace")
        self.set_configuration_object(key, config_text=text, description=description,
                                      config_type=path.suffix.lstrip(".") or "file")
        return configuration

    def set_configuration_object(self, name: str, config_text: str | None = None, description: str | None = None,
                                 config_type: str | None = None, config_dict: dict | list | None = None) -> None:
        """Store the configuration `name`: a dict (config_dict) or text (config_text); a clone keeps it."""
        if (config_text is None) == (config_dict is None):
            raise ValueError(f"set_configuration_object({name!r}): give config_text= or config_dict= (one of them)")
        if config_dict is not None:
            try:
                value: Any = json.loads(json.dumps(config_dict))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"configuration {name!r}: it must be JSON-like (dicts, lists, strings, numbers): {exc}") from None
            kind = "dictionary"
        else:
            value, kind = str(config_text), config_type or "text"
        entry = {"type": kind, "description": description or "", "value": value}

        def change(row):
            script = dict(row.script)
            script["configurations"] = {**(script.get("configurations") or {}), str(name): entry}
            return {"script": script}

        self._row = tasks.modify_task(self.db, self.id, change)

    def get_configurations(self) -> dict[str, dict]:
        """{name: {'type', 'description', 'value'}} of the task's configurations."""
        return dict(self.reload()._row.script.get("configurations") or {})

    def get_configuration_object(self, name: str) -> str | None:
        """The configuration `name` as text (a dict as JSON), or None if the task has none of that name."""
        entry = self.get_configurations().get(name)
        if entry is None:
            return None
        value = entry["value"]
        return value if isinstance(value, str) else json.dumps(value, indent=2)

    def get_configuration_object_as_dict(self, name: str) -> dict | list | None:
        """The configuration `name` as a dict (text is parsed as JSON or YAML), or None if there is none."""
        entry = self.get_configurations().get(name)
        return None if entry is None else _configuration_value(entry, name)

    def get_configuration_objects(self) -> dict[str, str]:
        """{name: text} of every configuration."""
        return {name: self.get_configuration_object(name) for name in self.get_configurations()}

    # -- tags ----------------------------------------------------------------------------

    def get_tags(self) -> list[str]:
        return list(self.reload()._row.tags)

    def add_tags(self, tags: str | Iterable[str]) -> None:
        """Add tags, keeping the task's others (also those other processes add at the same time)."""
        self._row.tags = tasks.edit_tags(self.db, self.id, add=[tags] if isinstance(tags, str) else list(tags))

    def set_tags(self, tags: Iterable[str]) -> None:
        """Replace all tags with these."""
        tags = list(tags)
        tasks.update_task(self.db, self.id, tags=tags)
        self._row.tags = tags

    def get_system_tags(self) -> list[str]:
        return list(self.reload()._row.system_tags)

    def set_system_tags(self, tags: Iterable[str]) -> None:
        tasks.update_task(self.db, self.id, system_tags=list(tags))
        self.reload()

    def archive(self) -> None:
        """Add the 'archived' system tag: hidden from default listings, never a cache hit."""
        self._set_system_tags_read(tasks.edit_tags(self.db, self.id, add=[tasks.ARCHIVED_TAG], system=True))

    def unarchive(self) -> None:
        self._set_system_tags_read(tasks.edit_tags(self.db, self.id, remove=[tasks.ARCHIVED_TAG], system=True))

    def _set_system_tags_read(self, tags: list[str]) -> None:
        self._row.system_tags, self._row.archived = tags, tasks.ARCHIVED_TAG in tags

    def set_archived(self, archive: bool) -> None:
        self.archive() if archive else self.unarchive()

    def get_archived(self) -> bool:
        return self.reload()._row.archived

    # -- status --------------------------------------------------------------------------

    def _move(self, to: str, message: str | None, force: bool) -> None:
        self._row = tasks.set_status(self.db, self.id, to, message, force=force)

    def mark_started(self, force: bool = False) -> None:
        self._move(_status.IN_PROGRESS, None, force)

    def mark_completed(self, ignore_errors: bool = True, status_message: str | None = None, force: bool = False) -> None:
        self._end_session()
        self._move(_status.COMPLETED, status_message, force)

    def mark_failed(self, ignore_errors: bool = True, status_reason: str | None = None, status_message: str | None = None, force: bool = False) -> None:
        self._end_session()
        self._move(_status.FAILED, status_reason or status_message or "", force)

    def mark_stopped(self, force: bool = False, status_message: str | None = None) -> None:
        """Stop the task; a worker running it ends its process within a second."""
        self._end_session()
        self._move(_status.STOPPED, status_message or "stopped by user", force)

    def publish(self) -> None:
        self._move(_status.PUBLISHED, None, False)

    def reset(self, force: bool = False) -> None:
        """Back to 'created' (outputs are kept), so the task can be enqueued again."""
        self._move(_status.CREATED, None, force)

    def close(self) -> None:
        """End a `Task.init` task: flush its console and mark it completed (if still running)."""
        if self._session is not None:
            self._session.finish(_status.COMPLETED, "")
            self._session = None
        with Task._current_lock:
            if Task._current is self:
                Task._current = None
        self.reload()

    def _end_session(self) -> None:
        if self._session is not None:
            self._session.stop()
            self._session = None

    def wait_for_status(
        self,
        status: Iterable[str] = (_status.COMPLETED, _status.STOPPED, _status.PUBLISHED),
        raise_on_status: Iterable[str] | None = (_status.FAILED,),
        check_interval_sec: float = 0.05,
        timeout: float | None = None,
    ) -> str:
        """Block until the task reaches one of `status`; raise if it reaches one of `raise_on_status`."""
        from .waiting import wait_for_tasks

        final = wait_for_tasks([self], status=status, raise_on_status=raise_on_status, poll=check_interval_sec, timeout=timeout)
        self._row = final[0]._row
        return self._row.status

    # -- artifacts and models ------------------------------------------------------------

    def upload_artifact(
        self,
        name: str,
        artifact_object: Any,
        metadata: Mapping[str, Any] | None = None,
        delete_after_upload: bool = False,
        auto_pickle: bool = True,
        preview: Any = None,
        wait_on_upload: bool = True,
        **_ignored: Any,
    ) -> bool:
        """Store an artifact on this task (any picklable object, numpy/pandas fast, or a file/folder path).

        Replaces an artifact of the same name. An object that cannot be pickled raises ArtifactError
        naming the artifact and the type, and nothing is written.
        """
        _names.check_artifact_name(name, where=f"task {self.id}: upload_artifact")
        kind = _artifacts.upload(self.db, self.id, name, artifact_object, metadata=metadata, preview=preview)
        if delete_after_upload and kind in ("file", "folder"):
            import shutil

            shutil.rmtree(artifact_object) if kind == "folder" else os.unlink(artifact_object)
        return True

    @property
    def artifacts(self) -> dict[str, _artifacts.Artifact]:
        """This task's artifacts by name (read fresh from the store)."""
        return {
            r["name"]: _artifacts.Artifact(
                name=r["name"], hash=r["hash"], size=r["size"], type=r["kind"], preview=r["preview"],
                metadata=json.loads(r["metadata"]), filename=r["filename"], task_id=self.id, _db=self.db,
            )
            for r in outputs.get_artifacts(self.db, self.id)
        }

    def delete_artifacts(self, artifact_names: Iterable[str]) -> bool:
        return all(outputs.delete_artifact(self.db, self.id, n) for n in artifact_names)

    @property
    def models(self) -> dict[str, list]:
        """{'input': [InputModel, ...], 'output': [Model, ...]}; `models['output']['name']` picks by name."""
        from .models import InputModel, Model, ModelList

        inputs = ModelList()
        for name, model_id in self.input_model_ids().items():
            row = outputs.get_model(self.db, model_id)
            if row is not None:
                model = InputModel.from_row(row, self.db)
                model.name = name  # the name it has on this task
                inputs.append(model)
        return {"input": inputs, "output": ModelList(Model.from_row(r, self.db) for r in outputs.get_models(self.db, self.id))}

    def input_model_ids(self) -> dict[str, str]:
        """{name on this task: model id} of the models connected as its inputs."""
        return dict(self.reload()._row.script.get("input_models") or {})

    def set_input_model_id(self, name: str, model_id: str) -> None:
        """Record model `model_id` as this task's input model `name` (a clone keeps it, and may change it)."""
        def change(row):
            script = dict(row.script)
            script["input_models"] = {**(script.get("input_models") or {}), name: model_id}
            return {"script": script}

        self._row = tasks.modify_task(self.db, self.id, change)

    # -- metrics -------------------------------------------------------------------------

    def get_logger(self):
        """This task's Logger (report_scalar, report_text, report_matplotlib_figure, ...)."""
        from .logger import Logger

        return Logger(self)

    def get_reported_scalars(self, max_samples: int = 0, x_axis: str = "iter") -> dict[str, dict[str, dict[str, list]]]:
        """{title: {series: {'x': [iterations], 'y': [values]}}}."""
        out: dict[str, dict[str, dict[str, list]]] = {}
        for r in outputs.get_scalars(self.db, self.id):
            s = out.setdefault(r["title"], {}).setdefault(r["series"], {"x": [], "y": []})
            s["x"].append(r["iteration"])
            s["y"].append(r["value"])
        return out

    def get_last_scalar_metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """{title: {series: {'last': v, 'min': v, 'max': v}}}."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for r in outputs.last_scalars(self.db, self.id):
            out.setdefault(r["title"], {})[r["series"]] = {"last": r["last"], "min": r["min"], "max": r["max"]}
        return out

    def get_reported_single_values(self) -> dict[str, float]:
        return {s: v["last"] for s, v in self.get_last_scalar_metrics().get("Summary", {}).items()}

    def get_reported_console_output(self, number_of_reports: int = 1) -> list[str]:
        """The console log, as chunks of text (most recent last)."""
        rows = outputs.read_console(self.db, self.id)
        return [r["text"] for r in rows[-number_of_reports:]] if number_of_reports else [r["text"] for r in rows]

    def get_console(self) -> str:
        """The whole console log as one string."""
        return "".join(r["text"] for r in outputs.read_console(self.db, self.id))

    def delete(self) -> None:
        """Delete the task and its records (blobs go at the next `labpipe gc`)."""
        tasks.delete_task(self.db, self.id)

    # -- the rest of ClearML's Task names that mean something offline ----------------------
    # (the names that do not are in labpipe/offline.py, and raise NotImplementedError saying why)

    class TaskStatusEnum(enum.StrEnum):
        """ClearML's task statuses (labpipe's tasks take those in `labpipe.status.STATUSES`)."""

        created = "created"
        queued = "queued"
        in_progress = "in_progress"
        stopped = "stopped"
        published = "published"
        publishing = "publishing"
        closed = "closed"
        failed = "failed"
        completed = "completed"
        unknown = "unknown"

    class DeleteError(Exception):
        """ClearML's error for a task that could not be deleted."""

    #: ClearML's marker for "argument not given" (distinct from None).
    NotSet = object()
    #: The system tag an archived task carries, as in ClearML.
    archived_tag = "archived"

    @property
    def task_id(self) -> str:
        """The task's id (the same as `id`)."""
        return self.id

    @property
    def last_worker(self) -> str | None:
        """The worker that ran (or runs) the task, if any."""
        return self.reload()._row.worker

    @property
    def logger(self):
        """This task's Logger (the same as `get_logger()`)."""
        return self.get_logger()

    @property
    def log(self):
        """The Python logger labpipe writes its own messages to."""
        import logging

        return logging.getLogger("labpipe")

    def started(self, ignore_errors: bool = True, force: bool = False) -> None:
        """ClearML's older name for `mark_started()`."""
        self.mark_started(force=force)

    def completed(self, ignore_errors: bool = True) -> None:
        """ClearML's older name for `mark_completed()`."""
        self.mark_completed(ignore_errors=ignore_errors)

    def stopped(self, ignore_errors: bool = True, force: bool = False, status_reason: str | None = None,
                status_message: str | None = None) -> None:
        """ClearML's older name for `mark_stopped()`."""
        self.mark_stopped(force=force, status_message=status_message)

    def flush(self, wait_for_uploads: bool = False) -> bool:
        """Everything reported is already in the store (labpipe writes as it goes), so nothing waits."""
        return True

    def rename(self, new_name: str) -> None:
        """ClearML's other name for `set_name()`."""
        self.set_name(new_name)

    def move_to_project(self, new_project_id: str | None = None, new_project_name: str | None = None,
                        system_tags: Sequence[str] | None = None) -> None:
        """Put the task in another project (labpipe's projects are names, so either argument is the name)."""
        project = new_project_name or new_project_id
        if not project:
            raise ValueError(f"task {self.id}: move_to_project needs new_project_name=")
        _names.check_label(project, kind="project", where=f"task {self.id}: move_to_project", allow_empty=False)
        tasks.update_task(self.db, self.id, project=project)
        self._row.project = project

    def set_project(self, project_id: str | None = None, project_name: str | None = None) -> None:
        """Put the task in another project (`project_name`, or `project_id`, which labpipe takes as a name)."""
        self.move_to_project(new_project_id=project_id, new_project_name=project_name)

    def set_task_type(self, task_type: str | TaskTypes) -> None:
        """Change the task's type (one of `TaskTypes`)."""
        value = task_type_name(task_type)
        tasks.update_task(self.db, self.id, type=value)
        self._row.type = value

    def get_executed_queue(self, return_name: bool = False) -> str | None:
        """The queue the task was last enqueued on (labpipe's queues are names: the same either way)."""
        return self.reload()._row.queue

    @classmethod
    def get_num_enqueued_tasks(cls, queue_name: str | None = None, queue_id: str | None = None) -> int:
        """How many tasks wait on the queue."""
        name = queue_name or queue_id
        for q in tasks.queue_stats(get_database()):
            if q["name"] == name:
                return int(q["queued"])
        raise ValueError(f"no queue named {name!r}; queues: {', '.join(q['name'] for q in tasks.queue_stats(get_database())) or 'none'}")

    @classmethod
    def get_by_name(cls, task_name: str) -> Task:
        """The newest task with this name, in any project."""
        return cls.get_task(task_name=task_name)

    @classmethod
    def query_tasks(cls, project_name: str | None = None, task_name: str | None = None, tags: Sequence[str] | None = None,
                    additional_return_fields: Sequence[str] | None = None, task_filter: Mapping[str, Any] | None = None,
                    **_ignored: Any) -> list[str] | list[dict]:
        """Ids of the tasks matching the filters (as `get_tasks`); with additional_return_fields, dicts
        of 'id' and those fields of the task's row."""
        found = cls.get_tasks(project_name=project_name, task_name=task_name, tags=tags, task_filter=task_filter)
        if not additional_return_fields:
            return [t.id for t in found]
        return [{"id": t.id, **{f: getattr(t.data, f, None) for f in additional_return_fields}} for t in found]

    @staticmethod
    def resolve_id(obj: Any) -> Any:
        """The id of a Task (or anything with an `id`); anything else as given."""
        return getattr(obj, "id", obj)

    @staticmethod
    def normalize_id(task_id: Any) -> Any:
        """A task id with surrounding white space removed."""
        return task_id.strip() if isinstance(task_id, str) else task_id

    def is_current_task(self) -> bool:
        """Whether this is the process's current task (ClearML's older form of `Task.current_task() == task`)."""
        return Task.current_task() == self

    @classmethod
    def is_offline(cls) -> bool:
        """False: labpipe writes to its store as it goes; there is no ClearML offline session to import later."""
        return False

    def get_initial_iteration(self) -> int:
        """0: labpipe reports iterations as given, with no offset (see set_initial_iteration)."""
        return 0

    def get_last_iteration(self) -> int:
        """The largest iteration of any reported scalar (0 when none was reported)."""
        return max((r["iteration"] for r in outputs.get_scalars(self.db, self.id)), default=0)

    def get_all_reported_scalars(self, x_axis: str = "iter") -> dict[str, dict[str, dict[str, list]]]:
        """Every reported scalar, unsampled: {title: {series: {'x': [...], 'y': [...]}}}."""
        return self.get_reported_scalars(x_axis=x_axis)

    def get_reported_single_value(self, name: str) -> float | None:
        """The single value reported as `name` (Logger.report_single_value), or None."""
        return self.get_reported_single_values().get(name)

    def get_reported_plots(self, max_iterations: int | None = None) -> list[dict]:
        """The plots, tables and images reported on this task (see `Logger.get_plots`)."""
        return self.get_logger().get_plots()

    def set_progress(self, progress: int) -> None:
        """Record how far the task is, in percent (0-100)."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 100:
            raise ValueError(f"task {self.id}: set_progress takes a percentage from 0 to 100, not {progress!r}")
        self._set_runtime("progress", int(progress))

    def get_progress(self) -> int | None:
        """The progress last set with `set_progress`, or None."""
        return self.reload()._row.runtime.get("progress")

    def get_user_properties(self, value_only: bool = False) -> dict[str, Any]:
        """The task's user properties: {name: {'name', 'value', 'description'}} (value_only: {name: value})."""
        props = dict(self.reload()._row.runtime.get("user_properties") or {})
        return {k: v["value"] for k, v in props.items()} if value_only else props

    def set_user_properties(self, *iterables: Any, **properties: Any) -> bool:
        """Add or change user properties: keyword arguments (name=value), dicts of {name: value} or of
        {'name', 'value', 'description'}, or lists of such dicts."""
        given: dict[str, dict] = {}

        def take(name: Any, value: Any, description: str = "") -> None:
            given[str(name)] = {"name": str(name), "value": str(value), "description": description or ""}

        for item in iterables:
            entries = item if isinstance(item, (list, tuple)) else [item]
            for entry in entries:
                if isinstance(entry, Mapping) and "name" in entry and "value" in entry:
                    take(entry["name"], entry["value"], entry.get("description", ""))
                elif isinstance(entry, Mapping):
                    for k, v in entry.items():
                        take(k, v["value"] if isinstance(v, Mapping) else v, v.get("description", "") if isinstance(v, Mapping) else "")
                else:
                    raise ValueError(f"task {self.id}: set_user_properties takes dicts or name=value, not {entry!r}")
        for k, v in properties.items():
            take(k, v)

        def change(row):
            runtime = dict(row.runtime)
            runtime["user_properties"] = {**(runtime.get("user_properties") or {}), **given}
            return {"runtime": runtime}

        self._row = tasks.modify_task(self.db, self.id, change)
        return True

    def delete_user_properties(self, *iterables: Any) -> bool:
        """Remove user properties by name (names, or dicts with a 'name')."""
        names = {str(n["name"]) if isinstance(n, Mapping) else str(n) for item in iterables
                 for n in (item if isinstance(item, (list, tuple, set)) else [item])}

        def change(row):
            runtime = dict(row.runtime)
            runtime["user_properties"] = {k: v for k, v in (runtime.get("user_properties") or {}).items() if k not in names}
            return {"runtime": runtime}

        self._row = tasks.modify_task(self.db, self.id, change)
        return True

    def _set_runtime(self, key: str, value: Any) -> None:
        def change(row):
            return {"runtime": {**row.runtime, key: value}}

        self._row = tasks.modify_task(self.db, self.id, change)

    def set_parameters_as_dict(self, dictionary: Mapping[str, Mapping[str, Any]]) -> None:
        """Set parameters from {section: {name: value}} (the form `get_parameters_as_dict` returns),
        replacing all others."""
        flat: dict[str, Any] = {}
        for section, values in dictionary.items():
            if not isinstance(values, Mapping):
                raise ValueError(f"task {self.id}: set_parameters_as_dict takes {{section: {{name: value}}}}; "
                                 f"section {section!r} holds {type(values).__name__}")
            flat.update({f"{section}/{name}": value for name, value in values.items()})
        self.set_parameters(flat)

    def get_requirements(self) -> dict[str, str]:
        """The packages the task declared or detected, as ClearML's {'pip': requirements text}."""
        return {"pip": "\n".join(self.reload()._row.script.get("packages") or [])}

    def set_packages(self, packages: str | os.PathLike | Sequence[str]) -> None:
        """Replace the task's packages: a list of requirement strings, or a requirements file's path."""
        from . import requirements

        found = requirements.parse_requirements(packages if isinstance(packages, os.PathLike) else
                                                 [packages] if isinstance(packages, str) else list(packages))

        def change(row):
            return {"script": {**row.script, "packages": list(dict.fromkeys(found))}}

        self._row = tasks.modify_task(self.db, self.id, change)

    def get_script(self) -> dict[str, Any]:
        """What the task runs: entry_point, working_dir, and for a script, its argv and repository."""
        script = self.reload()._row.script
        keys = ("kind", "entry_point", "working_dir", "argv", "repo", "repo_branch", "repo_commit", "packages")
        return {k: script[k] for k in keys if k in script}

    def get_models(self) -> dict[str, list]:
        """{'input': [...], 'output': [...]}: the same as `models`."""
        return self.models

    @property
    def input_models_id(self) -> dict[str, str]:
        """{name on this task: model id} of its input models."""
        return self.input_model_ids()

    @property
    def output_models_id(self) -> dict[str, str]:
        """{name: model id} of the models this task produced (the newest of each name)."""
        out: dict[str, str] = {}
        for model in reversed(self.models["output"]):
            out.setdefault(model.name, model.id)
        return out

    def get_registered_artifacts(self) -> dict[str, Any]:
        """{}: labpipe has no dynamic artifacts (register_artifact); upload_artifact stores a copy at once."""
        return {}


def _check_task_names(task_name: Any, project_name: Any, where: str) -> None:
    """Refuse a bad explicit task or project name before anything is created (labpipe/names.py)."""
    if task_name is not None:
        _names.check_label(task_name, kind="task", where=where)
    if project_name is not None:
        _names.check_label(project_name, kind="project", where=where)


def _merge(args: tuple, kwargs: dict) -> dict:
    out: dict[str, Any] = {}
    for a in args:
        out.update(a)
    out.update(kwargs)
    return out


def _param_row(key: str, value: Any, description: str = "") -> tuple[str, str, str, str, str]:
    section, name = _params.split_key(key)
    value_json, type_name = _params.encode(value)
    return section, name, value_json, type_name, description


def _configuration_value(entry: dict, name: str) -> Any:
    """A stored configuration as a dict or list: text is read as JSON, else YAML (where PyYAML is installed)."""
    value = entry["value"]
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise ValueError(f"configuration {name!r} is not JSON, and reading it as YAML needs PyYAML (pip install pyyaml)") from None
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"configuration {name!r} is neither JSON nor YAML: {exc}") from None


def _script_definition(requirements: Sequence[str] = ()) -> dict:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    extra = {"packages": list(dict.fromkeys(requirements))} if requirements else {}
    if not path:
        return {"kind": "interactive", **extra}
    path = os.path.abspath(path)
    try:
        source = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        source = ""
    return {"kind": "script", "entry_point": path, "working_dir": os.getcwd(), "source": source, "argv": sys.argv[1:], **extra}


# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(Task, "Task")
