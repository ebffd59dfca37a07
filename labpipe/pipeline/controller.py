"""ClearML's `PipelineController`: a DAG of steps made from existing tasks or functions.

    pipe = PipelineController(name="from tasks", project="examples", version="1.0")
    pipe.add_parameter("url", "data.csv")
    pipe.add_step("prep", base_task_id=template.id, parameter_override={"Args/url": "${pipeline.url}"})
    pipe.add_step("train", base_task_id=trainer.id, parameter_override={"Args/data": "${prep.artifacts.data.url}"})
    pipe.start_locally()          # or pipe.start(): the controller runs on the services queue

It shares the engine with the decorator (`PipelineRun`): one DAG model, one launcher, one cache,
one failure policy. Steps are declared up front, validated (names, parents, cycles, references)
before anything runs, and launched as their parents complete.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import names
from .. import params as _params
from .. import status as _status
from ..errors import PipelineError, TaskNotFound
from ..offline import install_on
from ..step_options import StepOptions
from ..store import leases, tasks
from ..task import ENV_TASK_ID, Task
from . import references
from .cache import Refresh, StepCodeKey, refresh_request, requested_refresh
from .dag import DAG, NODE_STATUSES, Node
from .pipeline_task import (
    agent_serves,
    clone_pipeline,
    close_run,
    create_pipeline_task,
    exit_if_stopped,
    exit_with_outcome,
    find_pipeline,
    finish,
    hand_over,
    param_rows,
    pool_starter,
    require_script_file,
    run_failed,
    running_pipeline_task,
    watch_run,
)
from .proxy import StepResult
from .run import PipelineRun
from .step import StepSpec, check_picklable, monitor_pairs

log = logging.getLogger("labpipe")


def _check_kwargs_fit(step: str, function: Callable, kwargs: dict) -> None:
    """function_kwargs the function cannot take are an error now, naming the step, not at launch."""
    import inspect

    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        raise PipelineError(f"step {step!r}: function {function.__name__!r} has no parameter(s) {', '.join(unknown)}; "
                            f"it takes {signature}")


class _on_pipeline_task:  # noqa: N801 - a decorator, named like one
    """A PipelineController method that acts on a pipeline task: this controller's when called on an
    instance (`pipe.get_logger()`), the running pipeline's when called on the class from inside one of
    its steps or callbacks (`PipelineController.get_logger()`), as ClearML documents both."""

    def __init__(self, func: Callable) -> None:
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj: Any, owner: type) -> Callable:
        if obj is None:
            def on_current(*args: Any, **kwargs: Any) -> Any:
                return self.func(None, running_pipeline_task(), *args, **kwargs)

            return functools.update_wrapper(on_current, self.func)

        def on_own(*args: Any, **kwargs: Any) -> Any:
            return self.func(obj, obj._ensure_task(_status.CREATED), *args, **kwargs)

        return functools.update_wrapper(on_own, self.func)


class PipelineController:
    """A pipeline built from steps (ClearML's `PipelineController`).

    name, project, version: identify the pipeline (`PipelineController.get` finds the highest version).
    add_pipeline_tags: tag every step 'pipe: <pipeline id>'. target_project: where step tasks go.
    abort_on_failure: a failed step stops everything at once. pool_frequency: minutes between status
    polls (labpipe polls continuously; a non-zero value only slows idle polling).
    retry_on_failure: default retries for every step (int or callable(pipeline, node, retries) -> bool).
    docker, packages, repo: recorded on the controller task.
    always_create_task: create the pipeline task now rather than at start().
    enable_local_imports: steps can import modules that sit beside the pipeline script.
    """

    #: ClearML's `PipelineController.Node`: what get_pipeline_dag() returns and callbacks receive
    Node = Node


    def __init__(
        self,
        name: str,
        project: str,
        version: str | None = None,
        pool_frequency: float = 0.0,
        add_pipeline_tags: bool = False,
        target_project: str | bool | None = None,
        abort_on_failure: bool = False,
        add_run_number: bool = True,
        retry_on_failure: int | Callable | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        packages: Sequence[str] | str | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        always_create_task: bool = False,
        enable_local_imports: bool = True,
        **_ignored: Any,
    ):
        if not name:
            raise PipelineError("PipelineController needs a name")
        for value, kind in ((name, "pipeline"), (project, "project"), (target_project if isinstance(target_project, str) else None, "project")):
            if value is not None:
                names.check_label(value, kind=kind, where="PipelineController")
        self._name = name
        self._project = project or ""
        # None: the run takes the newest run's version, incremented (ClearML's rule; see pipeline_task)
        self._version = str(version) if version is not None else None
        self._pool_frequency = pool_frequency
        self._add_pipeline_tags = add_pipeline_tags
        self._target_project = target_project if isinstance(target_project, str) else None
        self._abort_on_failure = abort_on_failure
        self._add_run_number = add_run_number
        self._retry_on_failure = retry_on_failure
        self._local_imports = enable_local_imports
        self._settings = {k: v for k, v in dict(docker=docker, docker_args=docker_args, docker_bash_setup_script=docker_bash_setup_script,
                                                 packages=packages, repo=repo, repo_branch=repo_branch, repo_commit=repo_commit).items() if v}
        self._params: dict[str, Any] = {}
        self._param_desc: dict[str, str] = {}
        self._specs: dict[str, StepSpec] = {}
        self._default_queue = "default"
        self._time_limit: float | None = None
        self._task: Task | None = None
        self._run: PipelineRun | None = None
        self._started: float | None = None
        self._progress: dict = {}  # start_locally's quiet / stream_output (labpipe.progress)
        self._refresh: bool | frozenset[str] = False
        if always_create_task:
            self._ensure_task(_status.CREATED)

    # -- declaring ------------------------------------------------------------------------

    def add_parameter(self, name: str, default: Any = None, description: str | None = None, param_type: Any = None) -> None:
        """A pipeline argument, stored in the pipeline task's `Args/` section (overridable on a clone)."""
        self._params[name] = default
        if description:
            self._param_desc[name] = description

    def get_parameters(self) -> dict[str, Any]:
        """The pipeline's arguments (after a clone's overrides, once running)."""
        return dict(self._params)

    def add_step(
        self,
        name: str,
        base_task_id: str | None = None,
        parents: Sequence[str] | None = None,
        parameter_override: dict | None = None,
        configuration_overrides: dict | None = None,
        task_overrides: dict | None = None,
        execution_queue: str | None = None,
        monitor_metrics: list | None = None,
        monitor_artifacts: list | None = None,
        monitor_models: list | None = None,
        time_limit: float | None = None,
        base_task_project: str | None = None,
        base_task_name: str | None = None,
        clone_base_task: bool = True,
        continue_on_fail: bool = False,
        pre_execute_callback: Callable | None = None,
        post_execute_callback: Callable | None = None,
        cache_executed_step: bool = False,
        base_task_factory: Callable | None = None,
        retry_on_failure: int | Callable | None = None,
        status_change_callback: Callable | None = None,
        continue_behaviour: dict | None = None,
        stage: str | None = None,
        **_ignored: Any,
    ) -> bool:
        """A step that clones an existing task, overrides its parameters, and enqueues the clone.

        base_task_id (or base_task_project + base_task_name, newest; or base_task_factory(node) -> Task).
        parameter_override: {'Section/name': value}; values may reference other steps with ClearML's
        syntax (`${prep.artifacts.data.url}`, `${pipeline.lr}`, `${prep.id}`, ...). A referenced step is
        a parent even if `parents` does not name it. time_limit: seconds before the step is stopped.
        cache_executed_step: reuse an identical earlier run. Raises TaskNotFound for a missing base task.
        """
        self._check_new(name, execution_queue)
        monitor_pairs(monitor_artifacts, "monitor_artifacts", name)
        if base_task_factory is None:
            if base_task_id is None:
                if not base_task_name:
                    raise PipelineError(f"step {name!r}: pass base_task_id, base_task_project + base_task_name, or base_task_factory")
                try:
                    base_task_id = Task.get_task(project_name=base_task_project, task_name=base_task_name).id
                except TaskNotFound as exc:
                    raise TaskNotFound(f"step {name!r}: base task not found: {exc}") from None
            else:
                try:
                    Task.get_task(task_id=base_task_id)
                except TaskNotFound as exc:
                    raise TaskNotFound(f"step {name!r}: base task not found: {exc}") from None
        overrides = {}
        for key, value in (parameter_override or {}).items():
            section, pname = _params.split_key(key)
            overrides[f"{section}/{pname}"] = value
        options = StepOptions.collect(dict(locals(), parameter_override=overrides, base_task_id=base_task_id))
        self._specs[name] = StepSpec(name=name, kind="task", options=options, parents=list(options.parents))
        return True

    def add_function_step(
        self,
        name: str,
        function: Callable,
        function_kwargs: dict | None = None,
        function_return: Sequence[str] | None = None,
        task_name: str | None = None,
        task_type: Any = None,
        packages: Sequence[str] | str | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        helper_functions: Sequence[Callable] | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        parents: Sequence[str] | None = None,
        execution_queue: str | None = None,
        monitor_metrics: list | None = None,
        monitor_artifacts: list | None = None,
        monitor_models: list | None = None,
        time_limit: float | None = None,
        continue_on_fail: bool = False,
        pre_execute_callback: Callable | None = None,
        post_execute_callback: Callable | None = None,
        cache_executed_step: bool = False,
        retry_on_failure: int | Callable | None = None,
        status_change_callback: Callable | None = None,
        tags: Sequence[str] | None = None,
        draft: bool = False,
        working_dir: str | None = None,
        continue_behaviour: dict | None = None,
        stage: str | None = None,
        **_ignored: Any,
    ) -> bool:
        """A step that runs `function(**function_kwargs)` as a standalone task on a worker.

        function_kwargs values may be literals, or references: `"${step.<return name>}"` passes that
        function step's returned object (by reference, store -> worker), other `${...}` forms resolve
        to values at launch. function_return: the names of the return values (artifacts).
        """
        self._check_new(name, execution_queue, task_name)
        monitor_pairs(monitor_artifacts, "monitor_artifacts", name)
        for value in function_return or ():
            names.check_artifact_name(value, kind="return value", where=f"step {name!r}")
        if not callable(function):
            raise PipelineError(f"step {name!r}: function must be callable, got {type(function).__name__}")
        from ..function_task import function_source

        function_source(function)  # fails now, naming the function, if its source is unreadable
        _check_kwargs_fit(name, function, function_kwargs or {})
        options = StepOptions.collect(dict(locals(), task_name=task_name or name))
        key = StepCodeKey.of(function, options, form="controller").get() if options.cache else None
        self._specs[name] = StepSpec(
            name=name, kind="function", options=options, function=function, kwargs=dict(function_kwargs or {}),
            parents=list(options.parents), code_key=key, references=True,
        )
        return True

    def _check_new(self, name: str, queue: str | None = None, task_name: str | None = None) -> None:
        names.check_step_name(name, where=f"pipeline {self._name!r}", references=True)
        if queue is not None and "${" not in queue:  # a reference is checked once resolved, at launch
            names.check_queue_name(queue, where=f"step {name!r}")
        if task_name is not None:
            names.check_label(task_name, kind="task", where=f"step {name!r}")
        if name in self._specs:
            raise PipelineError(f"step {name!r} is defined twice; step names must be unique in a pipeline")
        if name == "pipeline":
            raise PipelineError("'pipeline' is reserved (it names the pipeline's parameters in references)")

    def _validate(self) -> None:
        """Names, parents, cycles and references, before anything runs."""
        dag = DAG()
        function_returns = {n: set(s.options.return_values) for n, s in self._specs.items() if s.kind == "function"}
        for name, spec in self._specs.items():
            refs = references.find_refs(_referencing(spec))
            for ref in refs:
                references.validate_ref(ref, step=name, known_steps=set(self._specs), pipeline_params=set(self._params),
                                        allow_return_values=spec.kind == "function")
                # a task step's artifacts are known only once it ran: `${prep.data}` names its artifact
                # `data`, as in ClearML (a missing one fails the step that needs it, naming it)
                if ref.kind == "return_value" and ref.step in function_returns and ref.path[0] not in function_returns[ref.step]:
                    raise PipelineError(
                        f"step {name!r}: reference {ref.text} names return value {ref.path[0]!r} of step {ref.step!r}, "
                        f"which returns {sorted(function_returns.get(ref.step, ())) or 'nothing (it is not a function step)'}"
                    )
            parents = list(dict.fromkeys([*spec.parents, *sorted(_ref_steps(spec))]))
            dag.add_deferred(Node(name=name, parents=parents, kind=spec.kind))
            references.check_closed(name, _referencing(spec))
            spec.behaviour()  # an unknown continue_behaviour key is an error now, not mid-run
            if spec.kind == "function":
                check_picklable(name, {k: v for k, v in spec.kwargs.items() if not isinstance(v, str)})
        dag.validate()

    # -- running ----------------------------------------------------------------------------

    def start(self, queue: str = "services", step_task_created_callback: Callable | None = None,
              step_task_completed_callback: Callable | None = None, wait: bool = True, quiet: bool = False,
              stream_output: bool | None = None) -> bool:
        """Run the controller as a task on `queue`, as ClearML's start() does: the script runs again there.

        In the calling process the pipeline is enqueued and the process leaves, so that the code after
        `start()` runs exactly once, on the controller's side:
        - when a `labpipe agent` serves `queue`, at once, with exit status 0, printing the run's id and how
          to follow it;
        - when none does, a built-in pool here runs the controller; the caller shows the run's console
          as it goes and leaves with the run's outcome (0 completed, 1 failed, 130 stopped) once the
          script there, the code after `start()` included, has ended.
        On the controller's side it runs the pipeline and returns True if it succeeded, else False;
        `wait` is accepted for ClearML's sake (the pipeline has ended when start() returns). quiet: the
        caller shows nothing of the run; stream_output: as for start_locally, on the controller's side.
        """
        names.check_queue_name(queue, where=f"pipeline {self._name!r}: start")
        attached = self._attached_task()
        if attached is not None:
            self._progress = {"stream_output": stream_output}
            return self._control(attached, step_task_created_callback, step_task_completed_callback, pool=True)
        self._validate()
        require_script_file(f"pipeline {self._name!r}: start()", "use start_locally(), or put it in a .py file")
        task = self._ensure_task(_status.CREATED)
        Task.enqueue(task, queue_name=queue)
        if agent_serves(queue):
            hand_over(task, queue)
        pool_starter(services=True)(queue)
        exit_with_outcome(watch_run(task, quiet=quiet))
        return True  # not reached: the caller has left

    def start_locally(self, run_pipeline_steps_locally: bool = False, step_task_created_callback: Callable | None = None,
                      step_task_completed_callback: Callable | None = None, quiet: bool = False,
                      stream_output: bool | None = None) -> bool:
        """Run the controller in this process. Blocks until the pipeline ends; returns True when it succeeded.

        A failed run raises StepFailed naming each failed step's root cause, so that a script never ends
        with status 0 after a failed run (uncaught, it prints your frames and the causes, exit status 1);
        catch it to go on. A run stopped by `labpipe stop` prints one line and exits with status 130.

        quiet: show no progress (as LABPIPE_PROGRESS=0). stream_output: False leaves the steps' own
        output out of the progress shown (as LABPIPE_STEP_OUTPUT=0); see `labpipe.progress`.

        run_pipeline_steps_locally: True runs every step in this process's own worker pool (a private
        queue no agent serves); False sends steps to their execution queues, served by the built-in
        pool or by `labpipe agent` daemons serving them.
        """
        attached = self._attached_task()
        task = attached if attached is not None else None
        if task is None:
            self._validate()
            task = self._ensure_task(_status.IN_PROGRESS)
        from ..console import captured_console

        self._progress = {"quiet": quiet, "stream_output": stream_output}
        with captured_console(task.db, task.id):  # callbacks' prints go to the run's console too
            ok = self._control(task, step_task_created_callback, step_task_completed_callback, pool=True,
                               local_steps=run_pipeline_steps_locally)
        if not ok:
            exit_if_stopped(task)
            raise run_failed(task, self._name, list(self._run.errors) if self._run is not None else None)
        return ok

    def _control(self, task: Task, created_cb: Callable | None, completed_cb: Callable | None, *, pool: bool,
                 local_steps: bool = False) -> bool:
        self._validate()
        if task.get_status() != _status.IN_PROGRESS:
            tasks.set_status(task.db, task.id, _status.IN_PROGRESS, force=True)
        self._apply_overrides(task)

        run = PipelineRun(
            task, default_queue=self._default_queue, abort_on_failure=self._abort_on_failure,
            add_pipeline_tags=self._add_pipeline_tags, target_project=self._target_project,
            retry_on_failure=self._retry_on_failure, pool_frequency=float(self._pool_frequency or 0) * 60,
            pool=pool_starter() if pool else None, refresh=Refresh(self._refresh, requested_refresh()),
            step_task_created_callback=created_cb, step_task_completed_callback=completed_cb, owner=self,
            **self._progress,
        )
        run.params = dict(self._params)
        run.local_imports = self._local_imports
        if local_steps:
            # a queue no daemon serves: the steps run in this process's own pool, never on an agent
            run.local_queue = f"local-{os.uname().nodename}-{os.getpid()}"
        self._run = run
        self._started = time.time()
        resolver = _function_kwargs_resolver(run)
        self._store_object_kwargs(task)
        for spec in _topological(self._specs):
            spec.parents = list(dict.fromkeys([*spec.parents, *sorted(_ref_steps(spec))]))
            if spec.kind == "function":
                spec.kwargs = {k: resolver(v) for k, v in spec.kwargs.items()}
            run.add(spec)
        run.start()
        try:
            ok = close_run(run, task, timeout=self._time_limit)
        except TimeoutError:
            run.stop(f"pipeline execution time limit of {self._time_limit} s exceeded")
            finish(task, _status.FAILED, f"pipeline execution time limit of {self._time_limit} s exceeded")
            return False
        if task.get_status() == _status.STOPPED:
            return False
        finish(task, _status.COMPLETED if ok else _status.FAILED, "" if ok else "; ".join(run.errors))
        if not ok:  # never silently: the root cause of each failed step, where the caller sees it
            log.error("pipeline %r (task %s) failed:\n%s", self._name, task.id, "\n".join(run.errors) or "no step error recorded")
        return ok

    def _store_object_kwargs(self, task: Task) -> None:
        """Non-basic literal function_kwargs (frames, arrays, objects) become artifacts of the pipeline
        task, as in ClearML, and reach the step by reference; they count in its cache key by value."""
        from ..function_task import ArtifactRef, is_basic

        for spec in self._specs.values():
            if spec.kind != "function":
                continue
            for key, value in list(spec.kwargs.items()):
                if isinstance(value, (str, ArtifactRef)) or is_basic(value):
                    continue
                name = f"{spec.name}.{key}"
                task.upload_artifact(name, value)
                spec.arg_fingerprints[key] = value
                spec.kwargs[key] = ArtifactRef(task.id, name)

    def _ensure_task(self, status: str) -> Task:
        if self._task is None:
            self._attached_task()  # a relaunched run: report on it, never on a new run of our own
        if self._task is not None:
            if status == _status.IN_PROGRESS and self._task.get_status() != _status.IN_PROGRESS:
                tasks.set_status(self._task.db, self._task.id, _status.IN_PROGRESS, force=True)
                self._task.reload()
            return self._task
        self._task = create_pipeline_task(
            name=self._name, project=self._project, version=self._version,
            run_with={"pipeline_controller": self._name, **self._settings},
            params=param_rows(self._params, descriptions=self._param_desc), status=status,
            add_run_number=self._add_run_number, runtime={"dag": self._dag_json()},
        )
        return self._task

    def _dag_json(self) -> list[dict]:
        return [{"name": s.name, "kind": s.kind, "parents": s.parents, "queue": s.options.execution_queue} for s in self._specs.values()]

    def _apply_overrides(self, task: Task) -> None:
        """A clone's edited Args are the pipeline's parameters."""
        stored = task.get_parameters(cast=True)
        for key in list(self._params):
            if f"Args/{key}" in stored:
                self._params[key] = stored[f"Args/{key}"]

    def _attached_task(self) -> Task | None:
        task_id = os.environ.get(ENV_TASK_ID)
        if not task_id:
            return None
        if self._task is not None:  # attached already (reporting before start() attaches), or our own
            return self._task if self._task.id == task_id else None
        try:
            task = Task.get_task(task_id=task_id)
        except TaskNotFound:
            return None
        if task.data.script.get("pipeline_controller") != self._name:
            return None
        self._task = task
        return task

    def refresh_cache(self, steps: bool | Sequence[str] = True) -> None:
        """Re-run cached steps: True for all, or the names of steps to re-run (added to what
        `PipelineDecorator.refresh_cache` and LABPIPE_REFRESH ask)."""
        self._refresh = refresh_request(steps)

    # -- while / after running ----------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> float:
        """Wait for the pipeline to end; returns the seconds waited. A run enqueued with
        start(wait=False) is served meanwhile by this process's pool unless a daemon serves its queue."""
        t0 = time.time()
        if self._task is not None:
            from ..waiting import wait_for_tasks

            if self._task.get_status() == _status.QUEUED and self._task.data.queue:
                pool_starter(services=True)(self._task.data.queue)

            wait_for_tasks([self._task], status=_status.FINAL, raise_on_status=(), timeout=timeout)
        return time.time() - t0

    def stop(self, timeout: float | None = None, mark_failed: bool = False, mark_aborted: bool = False) -> None:
        """Stop the pipeline, as ClearML's `stop()`: a run still going has its running steps stopped and
        the rest skipped, and ends failed (mark_failed), stopped (mark_aborted), or else completed unless
        a step failed. A run that already ended keeps its status (`start(); wait(); stop()` is ClearML's
        own example)."""
        if self._task is None:
            return
        if self._task.get_status() in _status.FINAL:
            return
        if self._run is not None:
            self._run.stop("pipeline stopped")
        if mark_failed:
            status = _status.FAILED
        elif mark_aborted:
            status = _status.STOPPED
        else:
            failed = any(n.status in ("failed", "aborted") for n in self.get_pipeline_dag().values() if n.status != "skipped")
            status = _status.FAILED if failed and self._run is not None and self._run.errors else _status.COMPLETED
        leases.stop_below(self._task.db, self._task.id, "pipeline stopped")
        tasks.set_status(self._task.db, self._task.id, status, "pipeline stopped", force=True)
        self._task.reload()

    def is_running(self) -> bool:
        return self._task is not None and self._task.get_status() in (_status.QUEUED, _status.IN_PROGRESS)

    def is_successful(self, fail_on_step_fail: bool = True, fail_condition: str = "all") -> bool:
        """True if the pipeline completed; with fail_on_step_fail, also no step failed (a cached step is
        a success). fail_condition: 'all' (any step), 'failed' (only failed steps), 'aborted'."""
        if self._task is None or self._task.get_status() not in _status.SUCCEEDED:
            return False
        if not fail_on_step_fail:
            return True
        bad = {"all": ("failed", "aborted"), "failed": ("failed",), "aborted": ("aborted",)}.get(fail_condition, ("failed", "aborted"))
        return not any(n.status in bad for n in self.get_pipeline_dag().values())

    def elapsed(self) -> float:
        if self._started is not None:
            return time.time() - self._started
        if self._task is not None and self._task.reload().data.started:  # run by a worker: its task's times
            return (self._task.data.completed or time.time()) - self._task.data.started
        return 0.0

    def get_pipeline_dag(self) -> dict[str, Node]:
        """{step name: Node} with status, task id, times (also for a run a services worker controls)."""
        if self._run is not None:
            return self._run.get_pipeline_dag()
        if self._task is not None:
            from .render import load_dag

            recorded = {node.name: node for node in load_dag(self._task.id)}
            if recorded:
                for name, node in recorded.items():
                    if name in self._specs:
                        node.attach(self._specs[name])
                return recorded
        nodes = {name: Node(name=name, parents=list(spec.parents), kind=spec.kind) for name, spec in self._specs.items()}
        for name, node in nodes.items():
            node.attach(self._specs[name])
        return nodes

    def get_running_nodes(self) -> list[str]:
        return [n.name for n in self.get_pipeline_dag().values() if n.status in ("queued", "running")]

    def get_processed_nodes(self) -> list[str]:
        return [n.name for n in self.get_pipeline_dag().values() if n.done]

    def set_default_execution_queue(self, default_execution_queue: str) -> None:
        names.check_queue_name(default_execution_queue, where=f"pipeline {self._name!r}: set_default_execution_queue")
        self._default_queue = default_execution_queue

    def set_pipeline_execution_time_limit(self, max_execution_minutes: float | None) -> None:
        # ClearML: None or 0 disables the limit
        self._time_limit = float(max_execution_minutes) * 60 if max_execution_minutes else None

    def create_draft(self) -> Task:
        """Create the pipeline task without running it (to clone, edit and enqueue later)."""
        self._validate()
        return self._ensure_task(_status.CREATED)

    @property
    def id(self) -> str | None:
        return self._task.id if self._task is not None else None

    @property
    def task(self) -> Task | None:
        return self._task

    @_on_pipeline_task
    def get_logger(self, task: Task):
        """The pipeline task's Logger (`pipe.get_logger()`, or `PipelineController.get_logger()` in a step)."""
        return task.get_logger()

    @_on_pipeline_task
    def upload_artifact(self, task: Task, name: str, artifact_object: Any, metadata: dict | None = None, **kwargs: Any) -> bool:
        """Store an artifact on the pipeline task (on an instance, or on the class from inside a step)."""
        return task.upload_artifact(name, artifact_object, metadata=metadata, **kwargs)

    @_on_pipeline_task
    def upload_model(self, task: Task, model_name: str, model_local_path: str, **_ignored: Any) -> str:
        """Store a model (weights file or folder) on the pipeline task."""
        from ..models import OutputModel

        return OutputModel(task=task, name=model_name).update_weights(weights_filename=model_local_path)

    def add_tags(self, tags: str | Sequence[str]) -> None:
        """Add tags to the pipeline task (ClearML's `add_tags`)."""
        self._ensure_task(_status.CREATED).add_tags([tags] if isinstance(tags, str) else list(tags))

    def plot_dag(self, path: str | os.PathLike | None = None) -> bytes:
        """Draw this run's DAG to PNG (and store it as a plot on the pipeline task)."""
        from .render import plot_pipeline

        if self._task is None:
            raise PipelineError("the pipeline has no task yet: start it (or create_draft()) first")
        return plot_pipeline(self._task.id, path)

    # -- finding runs ------------------------------------------------------------------------

    @classmethod
    def get(cls, pipeline_id: str | None = None, pipeline_project: str | None = None, pipeline_name: str | None = None,
            pipeline_version: str | None = None, pipeline_tags: Sequence[str] | None = None) -> Task:
        """A pipeline run's task: by id, or the newest run of the highest version with this project/name."""
        return find_pipeline(pipeline_id, pipeline_project, pipeline_name, pipeline_version, pipeline_tags)

    @classmethod
    def clone(cls, pipeline: Task | str, name: str | None = None, parameters: dict | None = None) -> Task:
        """A new draft of a pipeline run, with `parameters` ({'Args/x': v} or {'x': v}) overriding its Args."""
        return clone_pipeline(pipeline, name=name, parameters=parameters)

    @classmethod
    def enqueue(cls, pipeline: Task | str, queue_name: str = "services") -> Task:
        """Enqueue a pipeline run (e.g. a clone) on `queue_name` for a services worker to re-run."""
        return Task.enqueue(pipeline, queue_name=queue_name)

    # -- the rest of ClearML's PipelineController names that mean something offline ------------
    # (the names that do not are in labpipe/offline.py, and raise NotImplementedError saying why)

    #: the statuses a Node can have, as ClearML lists them
    valid_job_status = list(NODE_STATUSES)

    @property
    def tags(self) -> list[str]:
        """The pipeline task's tags ([] before it has a task)."""
        return self._task.get_tags() if self._task is not None else []

    @property
    def version(self) -> str | None:
        """The pipeline's version: the run's, once it has a task; before, the one given (None: decided at start)."""
        if self._task is not None:
            return self._task.reload().data.runtime.get("pipeline_version") or self._version
        return self._version

    def connect_configuration(self, configuration: Any, name: str | None = None, description: str | None = None) -> Any:
        """Connect a configuration (dict, file path or text) to the pipeline task, as `Task.connect_configuration`."""
        return self._ensure_task(_status.CREATED).connect_configuration(configuration, name=name, description=description)


def _referencing(spec: StepSpec) -> list:
    """The parts of a step's declaration that may hold `${...}` references."""
    o = spec.options
    return [o.parameter_override, spec.kwargs, o.execution_queue, o.task_overrides, o.configuration_overrides]


def _ref_steps(spec: StepSpec) -> set[str]:
    """Steps a spec references (each is a parent, as in ClearML)."""
    return references.referenced_steps(_referencing(spec))


def _topological(specs: dict[str, StepSpec]) -> list[StepSpec]:
    """Specs ordered so that every parent (explicit or referenced) comes before its children."""
    order, seen = [], set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        spec = specs[name]
        for parent in [*spec.parents, *sorted(_ref_steps(spec))]:
            if parent in specs:
                visit(parent)
        order.append(spec)

    for name in specs:
        visit(name)
    return order


def _function_kwargs_resolver(run: PipelineRun) -> Callable[[Any], Any]:
    """Turn `"${step.<return name>}"` into a proxy (passed by reference); other references stay for launch."""
    def convert(value: Any) -> Any:
        refs = references.find_refs(value) if isinstance(value, str) else []
        if len(refs) == 1 and refs[0].text == value and refs[0].kind == "return_value":
            return StepResult(run, refs[0].step, refs[0].path[0])
        return value

    return convert



# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(PipelineController, "PipelineController")
