"""The pipeline's own task: creating it (with what it takes to run it again), following it from the
calling process, ending it; and the pool that serves its steps. Shared by the decorator and controller."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import params as _params
from .. import progress
from .. import status as _status
from ..errors import StepFailed
from ..store import leases, tasks
from ..store.db import get_database
from ..task import Task

log = logging.getLogger("labpipe")


def create_pipeline_task(
    *, name: str, project: str, version: str | None, run_with: dict, params: list[tuple], status: str,
    parent: str | None = None, tags: list[str] | None = None, add_run_number: bool = True, runtime: dict | None = None,
    fallback_entry: str | None = None,
) -> Task:
    """A pipeline run's task (type controller, system tag 'pipeline').

    run_with: what finds the pipeline again when its script re-runs under a worker
    ({'pipeline_function': qualname} or {'pipeline_controller': name}, plus recorded settings).
    params: (section, name, value_json, type, description) rows (the pipeline's arguments).
    add_run_number: name the second run of a pipeline 'name #2', as ClearML does.
    """
    db = get_database()
    if version is None:  # ClearML's rule: the newest run's version, incremented; 1.0.0 for the first
        from ..store import pipelines
        from ..versions import DEFAULT_VERSION, next_version

        previous = pipelines.last_version(db, project, name)
        version = next_version(str(previous)) if previous else DEFAULT_VERSION
    owner = f"local:{os.uname().nodename}:{os.getpid()}"
    row = tasks.create_task(
        db, name=name, run_of=name if add_run_number else None, project=project, type="controller", parent=parent, script=entry_script(run_with, fallback_entry),
        runtime={"pipeline_name": name, "pipeline_version": version, **(runtime or {})},
        system_tags=["pipeline"], tags=list(tags or ()), status=status,
        owner=owner if status == _status.IN_PROGRESS else None, params=params,
    )
    return Task(row, db)


def entry_script(run_with: dict, fallback_entry: str | None = None) -> dict:
    """How to run this pipeline again: a snapshot of the entry script, its folder, its command line."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or fallback_entry
    definition: dict[str, Any] = {"kind": "script", **run_with}
    if path:
        path = os.path.abspath(path)
        definition.update(entry_point=path, working_dir=os.getcwd(), sys_path=[os.path.dirname(path)], argv=sys.argv[1:])
        try:
            definition["source"] = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    return definition


def param_rows(values: dict, sections: dict[str, str] | None = None, descriptions: dict[str, str] | None = None) -> list[tuple]:
    """Parameter rows for a pipeline's arguments: section 'Args' unless `sections` maps the name elsewhere."""
    out = []
    for key, value in values.items():
        value_json, type_name = _params.encode(value)
        out.append(((sections or {}).get(key, "Args"), key, value_json, type_name, (descriptions or {}).get(key, "")))
    return out


def ensure_progress_handler() -> None:
    """Show pipeline progress on stderr unless the application configured logging itself."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("labpipe: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def finish(task: Task, status: str, message: str) -> None:
    """Record how the run ended, unless it was stopped from outside meanwhile (that stays stopped)."""
    leases.end_run(task.db, task.id, status, message)
    task.reload()
    progress.run_ended(task.id, task.data.status, task.data.status_message or "")


def stop_pipeline_task(task: Task, reason: str) -> None:
    """Stop a pipeline task and every step below it that is still queued or running."""
    leases.stop_below(task.db, task.id, reason)
    tasks.set_status(task.db, task.id, _status.STOPPED, reason, force=True)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While a controller runs in this process's main thread, SIGTERM (`kill`, a closing terminal's
    session manager, a container stop) ends it as Ctrl-C does: running steps stopped, the rest skipped,
    the pipeline marked stopped, instead of a dead controller whose task stays in_progress. A handler
    the application installed itself is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def follow(task: Task, quiet: bool = False, stream_output: bool | None = True) -> Task:
    """Wait for a pipeline task executed elsewhere, showing its progress (`labpipe.progress.follow`)."""
    progress.follow(task.id, quiet=quiet, stream_output=stream_output, db=task.db)
    return task.reload()


def pool_starter(workers: int | None = None, services: bool = False) -> Callable[[str], None]:
    """A callable that makes sure a queue is served (by a daemon, or by this process's built-in pool)."""
    def ensure(queue: str) -> None:
        from ..agent.pool import ensure_pool

        count = 1 if (services or queue == "services") else (workers or os.cpu_count() or 1)
        ensure_pool({queue: count})

    return ensure


INTERRUPTED = "interrupted (Ctrl-C)"


def require_script_file(what: str, advice: str, fallback_entry: str | None = None) -> None:
    """Refuse remote execution of code that no worker could re-run (typed into a REPL or notebook)."""
    from ..errors import PipelineError

    entry = entry_script({}, fallback_entry).get("entry_point")
    if not entry or not os.path.isfile(entry):
        raise PipelineError(
            f"{what} re-runs the pipeline's script on a services worker, but this code does not come from a "
            f"script file (an interactive session or notebook?); {advice}"
        )


#: what a script sees when `labpipe stop` (or Task.mark_stopped) ended its run: this one line, exit 130
STOPPED_LINE = "pipeline stopped by `labpipe stop`"
EXIT_STOPPED = 130  # as for Ctrl-C: a run ended by the user, not a failure of its own


def agent_serves(queue: str) -> bool:
    """Whether a live `labpipe agent` daemon serves `queue` (`labpipe workers` lists them)."""
    from ..waiting import WORKER_MAX_AGE

    return any(w["kind"] == "daemon" and queue in w["queues"] for w in leases.live_workers(get_database(), WORKER_MAX_AGE))


def hand_over(task: Task, queue: str) -> None:
    """The caller's side of `start()` when a `labpipe agent` serves `queue`: say which run was enqueued
    and how to follow it, then leave the process (exit status 0), as ClearML's start() does."""
    ensure_progress_handler()
    log.info("pipeline %r enqueued on %r as run %s; a labpipe agent runs it. Follow it with "
             "`labpipe show %s --log --follow`", task.name, queue, task.id, task.id)
    raise SystemExit(0)


def watch_run(task: Task, poll: float = 0.1, quiet: bool = False) -> Task:
    """Follow a run that another process controls, from the process that waits for it, until the run
    ended and its script's process did too (the code after `start()` runs there and must not lose
    the pool it runs in). Shown: the run's console as it grows (its stdout to ours, its stderr to ours),
    which holds the controller's own progress lines (labpipe.progress, plain lines under a worker) and
    whatever its script prints; nothing with quiet. Ctrl-C stops the run and its steps, and is raised.
    """
    from ..store import outputs
    from ..waiting import WORKER_MAX_AGE, wait_for_tasks

    ensure_progress_handler()
    seq = 0

    def pump() -> None:
        nonlocal seq
        for row in outputs.read_console(task.db, task.id, after=seq):
            seq = row["seq"]
            if not quiet:
                (sys.stdout if row["stream"] == "stdout" else sys.stderr).write(row["text"])
        sys.stdout.flush()
        sys.stderr.flush()

    def script_ended() -> bool:
        data = task.reload().data
        if data.status == _status.STOPPED or not data.worker:
            return True  # a stopped run's process is ended by its worker; a never-started one has none
        note = data.runtime.get("script_exit") or {}
        if note.get("attempt") == data.attempt:
            return True
        return not any(w["id"] == data.worker for w in leases.live_workers(task.db, WORKER_MAX_AGE))

    try:
        while True:
            try:
                wait_for_tasks([task], status=_status.FINAL, raise_on_status=(), poll=poll, timeout=0.5)
            except TimeoutError:
                pass
            pump()
            if task.get_status() in _status.FINAL and script_ended():
                pump()
                return task.reload()
    except KeyboardInterrupt:
        stop_pipeline_task(task, INTERRUPTED)
        raise


def exit_if_stopped(task: Task) -> None:
    """A run stopped from outside (`labpipe stop`, Task.mark_stopped) while this script ran or waited
    for it: one line and exit status 130 (SystemExit: no traceback), as a user's stop is no failure.
    A Ctrl-C here is not this case: KeyboardInterrupt is on its way up already."""
    data = task.reload().data
    if data.status != _status.STOPPED or data.status_message == INTERRUPTED:
        return
    ensure_progress_handler()
    message = data.status_message or ""
    extra = "" if message in ("", "stopped by user", "pipeline stopped") else f" ({message})"
    log.error("%s%s", STOPPED_LINE, extra)
    raise SystemExit(EXIT_STOPPED)


def run_failed(task: Task, name: str, errors: list[str] | None = None) -> StepFailed:
    """The error a failed run raises where it was started (`start_locally()`, `start()` on the
    controller's side): the pipeline, its task, and each failed step's root cause first."""
    detail = "\n".join(errors) if errors else (task.reload().data.status_message or "no step error recorded")
    return StepFailed(f"pipeline {name!r} (task {task.id}) failed:\n{detail}")


def exit_with_outcome(task: Task) -> None:
    """The caller's side of `start()` once the run (controlled elsewhere) ended: exit status 0 if it
    completed; one line and 130 if it was stopped; the root cause and 1 if it failed. The caller is
    a stand-in for the run, so it leaves as the run ended rather than raise (the run's own console,
    shown above, has the traceback)."""
    exit_if_stopped(task)
    if task.get_status() in _status.SUCCEEDED:
        raise SystemExit(0)
    ensure_progress_handler()
    log.error("pipeline %r (task %s) %s:\n%s", task.name, task.id, task.get_status(),
              task.data.status_message or "no step error recorded")
    raise SystemExit(1)


def wait_on_services(task: Task, queue: str, quiet: bool = False, stream_output: bool | None = True) -> Task:
    """Make sure `queue` is served, follow the enqueued pipeline task to its end (showing progress,
    see `labpipe.progress`), and stop it and its steps on Ctrl-C. Returns the task as it ended."""
    pool_starter(services=True)(queue)
    ensure_progress_handler()
    try:
        return follow(task, quiet=quiet, stream_output=stream_output)
    except KeyboardInterrupt:
        stop_pipeline_task(task, INTERRUPTED)
        raise


def close_run(run, task: Task, timeout: float | None = None) -> bool:
    """Wait for a controller's declared steps to end (`PipelineRun.close`); True if the run succeeded.

    Ctrl-C or SIGTERM meanwhile stops the run (`interrupt`) and is raised; a failed scheduler ends the
    run failed and is raised, so that it never stays in progress. TimeoutError (past `timeout`) is the
    caller's to handle.
    """
    from ..errors import PipelineError

    try:
        with sigterm_as_interrupt():
            return run.close(timeout=timeout)
    except KeyboardInterrupt:
        interrupt(run, task)
        raise
    except PipelineError as exc:
        finish(task, _status.FAILED, str(exc))
        raise


def interrupt(run, task: Task) -> None:
    """Ctrl-C in the controller: stop the running steps, skip the rest, mark the pipeline stopped."""
    run.stop(INTERRUPTED)
    finish(task, _status.STOPPED, INTERRUPTED)


# ------------------------------------------------------------------- the running pipeline, found

_current: contextvars.ContextVar[Any] = contextvars.ContextVar("labpipe_pipeline", default=None)


def current_run() -> Any:
    """The pipeline run (a `PipelineRun`) whose logic is executing in this thread and context, if any."""
    return _current.get()


def set_current_run(run: Any) -> contextvars.Token:
    """Make `run` the current one while its logic executes; `reset_current_run(token)` ends that."""
    return _current.set(run)


def reset_current_run(token: contextvars.Token) -> None:
    _current.reset(token)


def running_pipeline_task() -> Task:
    """The task of the pipeline running here: the run whose logic this is, the controller task this
    process runs, or the pipeline of the component step this process runs."""
    run = current_run()
    if run is not None:
        return run.task
    task = Task.current_task()
    if task is not None and task.task_type == "controller":  # the logic (any mode), or a nested run
        return task
    if task is not None and task.parent:  # a component's step task: its pipeline is its parent
        parent = Task.get_task(task_id=task.parent)
        if parent.task_type == "controller":
            return parent
    from ..errors import PipelineError

    raise PipelineError("no running pipeline: call this inside a pipeline's logic or one of its components")


def find_pipeline(pipeline_id: str | None = None, project: str | None = None, name: str | None = None,
                  version: str | None = None, tags: Sequence[str] | None = None) -> Task:
    """A pipeline run's task: by id, or the newest run of the highest version with this project/name
    (`PipelineController.get`). Raises TaskNotFound saying what was looked for."""
    if pipeline_id:
        return Task.get_task(task_id=pipeline_id)
    from packaging.version import InvalidVersion, Version

    from ..errors import TaskNotFound

    runs = [t for t in Task.get_tasks(project_name=project, task_type="controller", tags=tags)
            if name is None or t.data.runtime.get("pipeline_name") == name]
    if version is not None:
        runs = [t for t in runs if t.data.runtime.get("pipeline_version") == str(version)]
    if not runs:
        raise TaskNotFound(f"no pipeline run named {name!r} in project {project!r}"
                           + (f" with version {version!r}" if version else ""))

    def version_key(t: Task):
        v = t.data.runtime.get("pipeline_version") or "0"
        try:
            return (1, Version(v), t.data.created)
        except InvalidVersion:
            return (0, Version("0"), t.data.created)

    return max(runs, key=version_key)


def clone_pipeline(pipeline: Task | str, name: str | None = None, parameters: dict | None = None) -> Task:
    """A new draft of a pipeline run, with `parameters` ({'Args/x': v} or {'x': v}) overriding its Args."""
    task = Task.clone(pipeline, name=name)
    if parameters:
        task.update_parameters({k if "/" in k else f"Args/{k}": v for k, v in parameters.items()})
    return task
