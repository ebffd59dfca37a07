"""ClearML's `PipelineDecorator`: pipelines from decorated functions.

    @PipelineDecorator.component(return_values=["df"], cache=True)
    def load(url): ...

    @PipelineDecorator.pipeline(name="demo", project="examples", version="0.1")
    def main(url="data.pkl"):
        df = load(url)          # returns a proxy at once; the step runs on a worker
        ...

    PipelineDecorator.run_locally()   # or debug_pipeline(); default: the controller runs on `services`
    main()

Three modes: debug (plain calls here), local (controller here, steps on the built-in pool), remote
(the default: the controller is itself a task on the `services` queue; this process waits).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .. import names, progress
from .. import params as _params
from .. import status as _status
from ..errors import PipelineError, StepFailed
from ..function_task import unwrap_decorated
from ..offline import install_on
from ..step_options import StepOptions
from ..task import ENV_TASK_ID, Task, context_task
from .cache import Refresh, StepCodeKey, request_refresh, requested_refresh
from .dag import NODE_STATUSES, Node
from .pipeline_task import (
    clone_pipeline,
    close_run,
    create_pipeline_task,
    current_run,
    ensure_progress_handler,
    exit_if_stopped,
    find_pipeline,
    finish,
    interrupt,
    param_rows,
    pool_starter,
    require_script_file,
    reset_current_run,
    running_pipeline_task,
    set_current_run,
    sigterm_as_interrupt,
    wait_on_services,
)
from .proxy import is_result
from .run import PipelineRun
from .step import StepSpec, check_picklable, monitor_pairs

log = logging.getLogger("labpipe")

class Component:
    """A decorated pipeline component: a plain function outside a pipeline, a step inside one."""

    def __init__(self, func: Callable, name: str | None, options: StepOptions):
        functools.update_wrapper(self, func)
        self.func = func
        own = unwrap_decorated(func)[0]  # under another decorator: the user's function, named after it
        self.name = name or own.__name__
        # its steps' tasks are named after the component (its steps are name, name_1, ...)
        self.options = replace(options, task_name=self.name)
        self.return_values = self.options.return_values
        # refused here, at decoration, before any pipeline runs or anything is stored
        names.check_step_name(self.name, where=f"component {getattr(func, '__qualname__', self.name)!r}")
        for value in self.return_values:
            names.check_artifact_name(value, kind="return value", where=f"step {self.name!r}")
        if options.execution_queue is not None:
            names.check_queue_name(options.execution_queue, where=f"step {self.name!r}")
        monitor_pairs(options.monitor_artifacts, "monitor_artifacts", self.name)
        self._code_key: StepCodeKey | None = None
        self._signature = inspect.signature(own)

    def __repr__(self) -> str:
        return f"<labpipe component {self.name!r}>"

    @property
    def code_key(self) -> str:
        """The code half of this component's cache key (source, helpers, local modules, settings).

        Kept between calls and runs, and computed again when a local module it covers is edited
        (``StepCodeKey``): a notebook that edits one between two runs must not be served the old result.
        """
        return self._key_in(None)

    def _key_in(self, run: Any) -> str:
        if self._code_key is None:
            self._code_key = StepCodeKey.of(self.func, self.options, form="component")
        return self._code_key.get(run)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        run = current_run()
        if run is None:  # outside a pipeline, or debug mode: a plain call, as ClearML does (shown as a step in debug)
            return progress.call_step(self.name, self.func, args, kwargs)
        call_kwargs = _call_arguments(self._signature, args, kwargs, f"component {self.name!r}")
        name = run.unique_name(self.name)
        check_picklable(name, call_kwargs)
        spec = StepSpec(
            name=name, kind="function", options=self.options, function=self.func, kwargs=call_kwargs,
            parents=list(self.options.parents), code_key=self._key_in(run) if self.options.cache else None,
        )
        run.add(spec)
        run.start()
        return run.results(name, self.return_values)


def _call_arguments(signature: inspect.Signature, args: tuple, kwargs: dict, what: str) -> dict[str, Any]:
    """A call's arguments by name, defaults filled in (they are recorded as parameters, as in ClearML).

    **kwargs are flattened into the dict; *args cannot be named, so they are refused with a message.
    """
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise PipelineError(f"{what} called with bad arguments: {exc}") from None
    bound.apply_defaults()
    out = dict(bound.arguments)
    for pname, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD and pname in out:
            out.update(out.pop(pname))
        elif param.kind is param.VAR_POSITIONAL and pname in out:
            if out[pname]:
                raise PipelineError(f"{what}: *{pname} arguments cannot be recorded as parameters; pass them by name")
            del out[pname]
    return out


class PipelineFunction:
    """A decorated pipeline function: calling it runs the pipeline in the current mode."""

    def __init__(self, func: Callable, settings: dict[str, Any]):
        functools.update_wrapper(self, func)
        self.func = func
        self.settings = settings
        self._signature = inspect.signature(func)
        self._instances: list[tuple[threading.Thread, dict]] = []

    def __repr__(self) -> str:
        return f"<labpipe pipeline {self.settings['name']!r}>"

    # -- entry ----------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call_kwargs = _call_arguments(self._signature, args, kwargs, f"pipeline {self.settings['name']!r}")
        outer = current_run()
        if outer is not None:
            return self._as_step(outer, call_kwargs)
        if PipelineDecorator._mode == "debug":
            return self._debug(call_kwargs)
        attached = self._attached_task()
        if attached is not None:
            return self._control(attached, self._overridden(attached, call_kwargs), local_pool=True)
        if self.settings.get("multi_instance_support") == "parallel":
            return self._start_parallel(call_kwargs)
        return self._run(call_kwargs)

    def _debug(self, kwargs: dict) -> Any:
        """Debug mode: the logic and its components are plain calls here, but the run is recorded (a
        pipeline task, as ClearML's debug mode keeps its controller task), so that get_logger(),
        upload_artifact() and Task.current_task() in the logic work as in the other modes."""
        outer = context_task.get()
        task = self._create_task(kwargs, status=_status.IN_PROGRESS, parent=outer.id if outer is not None else None)
        token = context_task.set(task)
        try:
            with progress.debug_run(task.db, task.id, task.name, quiet=bool(self.settings.get("quiet")),
                                    stream_output=self.settings.get("stream_output")):
                result = self.func(**kwargs)
        except KeyboardInterrupt:
            finish(task, _status.STOPPED, "interrupted (Ctrl-C)")
            raise
        except BaseException as exc:
            finish(task, _status.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            context_task.reset(token)
        name = self.settings.get("return_value")
        if name and result is not None:
            task.upload_artifact(name, result)
        finish(task, _status.COMPLETED, "")
        return result

    def _run(self, kwargs: dict) -> Any:
        remote = PipelineDecorator._mode == "remote" and self.settings.get("pipeline_execution_queue", "services") is not None
        if remote and not self.settings.get("start_controller_locally"):
            return self._run_remotely(kwargs)
        task = self._create_task(kwargs, status=_status.IN_PROGRESS)
        from ..console import captured_console

        with captured_console(task.db, task.id):  # what the logic prints goes to the run's console too
            return self._control(task, kwargs, local_pool=True)

    # -- the controller -------------------------------------------------------------------

    def _control(self, task: Task, kwargs: dict, *, local_pool: bool, parent_run: PipelineRun | None = None) -> Any:
        """Run the pipeline logic here as the controller of `task`; steps go to their queues."""
        s = self.settings
        run = PipelineRun(
            task,
            default_queue=s.get("default_queue") or PipelineDecorator._default_queue or "default",
            abort_on_failure=bool(s.get("abort_on_failure")),
            add_pipeline_tags=bool(s.get("add_pipeline_tags")),
            target_project=s.get("target_project"),
            retry_on_failure=s.get("retry_on_failure"),
            pool_frequency=float(s.get("pool_frequency") or 0.0) * 60 if s.get("pool_frequency") else 0.0,
            pool=pool_starter(PipelineDecorator._workers) if local_pool else None,
            refresh=Refresh(requested_refresh(), Refresh.recorded(task.data.runtime)),
            quiet=bool(s.get("quiet")), stream_output=s.get("stream_output"),
        )
        run.local_imports = bool(s.get("enable_local_imports", True))
        token = set_current_run(run)
        task_token = context_task.set(task)
        try:
            with sigterm_as_interrupt():
                result = self.func(**kwargs)
                if is_result(result) or (isinstance(result, tuple) and any(is_result(r) for r in result)):
                    result = result._resolve() if is_result(result) else tuple(r._resolve() if is_result(r) else r for r in result)
        except KeyboardInterrupt:
            interrupt(run, task)
            raise
        except BaseException as exc:
            # The logic failed (often by using a failed step's value): let declared steps finish
            # unless told to abort, then fail the pipeline with the original error.
            if s.get("abort_on_failure"):
                run.stop(f"pipeline logic raised {type(exc).__name__}")
            else:
                run.close()
            finish(task, _status.FAILED, f"{type(exc).__name__}: {exc}")
            exit_if_stopped(task)  # `labpipe stop` is one line and exit 130, not this error's traceback
            raise
        finally:
            context_task.reset(task_token)
            reset_current_run(token)
        ok = close_run(run, task)
        if not ok:
            message = "; ".join(run.errors)
            finish(task, _status.FAILED, message)
            exit_if_stopped(task)
            raise StepFailed(f"pipeline {s['name']!r} (task {task.id}) failed: {message}")
        name = s.get("return_value") or ("return_object" if parent_run is not None else None)
        if name and result is not None:
            task.upload_artifact(name, result)
        finish(task, _status.COMPLETED, "")
        return result

    def _create_task(self, kwargs: dict, *, status: str, parent: str | None = None) -> Task:
        s = self.settings
        sections = {arg: sec for sec, args in (s.get("args_map") or {}).items() for arg in args}
        # A refresh asked for here (refresh_cache(), LABPIPE_REFRESH) is recorded on the run, so that a
        # controller started elsewhere (a services worker or daemon, with its own environment) honours it.
        recorded = Refresh(requested_refresh()).record()
        runtime = {"refresh": recorded} if recorded else None
        return create_pipeline_task(
            name=s["name"], project=s.get("project") or "", version=s.get("version"),
            run_with={"pipeline_function": self.func.__qualname__}, params=param_rows(kwargs, sections), status=status,
            parent=parent, tags=list(s.get("tags") or ()), add_run_number=s.get("add_run_number", True),
            fallback_entry=inspect.getsourcefile(self.func), runtime=runtime,
        )

    def _overridden(self, task: Task, kwargs: dict) -> dict:
        """The call's arguments with the task's stored (possibly edited) Args applied: a clone with
        changed arguments really runs with them."""
        stored = task.get_parameters(cast=True)
        sections = {arg: sec for sec, args in (self.settings.get("args_map") or {}).items() for arg in args}
        out = dict(kwargs)
        for key, value in kwargs.items():
            full = f"{sections.get(key, 'Args')}/{key}"
            if full in stored:
                out[key] = _params.cast_like(stored[full], value, f"pipeline {self.settings['name']!r}: {full}")
        return out

    def _attached_task(self) -> Task | None:
        """Under a worker running this pipeline's task (remote mode, or a relaunched clone): that task."""
        task_id = os.environ.get(ENV_TASK_ID)
        if not task_id or PipelineDecorator._attached == task_id:
            return None
        try:
            task = Task.get_task(task_id=task_id)
        except LookupError:
            return None
        if task.data.script.get("pipeline_function") != self.func.__qualname__:
            return None
        PipelineDecorator._attached = task_id
        return task

    # -- remote mode ----------------------------------------------------------------------

    def _run_remotely(self, kwargs: dict) -> Any:
        queue = self.settings.get("pipeline_execution_queue") or "services"
        require_script_file(f"pipeline {self.settings['name']!r}: remote mode",
                            "call PipelineDecorator.run_locally() first, or put the pipeline in a .py file",
                            inspect.getsourcefile(self.func))
        task = self._create_task(kwargs, status=_status.CREATED)
        Task.enqueue(task, queue_name=queue)
        if PipelineDecorator._enqueue_only:
            ensure_progress_handler()  # the task id and what runs it must reach the user
            log.info("pipeline %r enqueued on %r as task %s; `labpipe agent --queue %s` runs it", self.settings["name"], queue, task.id, queue)
            return None
        final = wait_on_services(task, queue, quiet=bool(self.settings.get("quiet")),
                                 stream_output=self.settings.get("stream_output") is not False)
        exit_if_stopped(final)
        if final.status not in _status.SUCCEEDED:
            raise StepFailed(f"pipeline {self.settings['name']!r} (task {task.id}) {final.status}: {final.data.status_message}")
        name = self.settings.get("return_value")
        if name and name in final.artifacts:
            return final.artifacts[name].get()
        return None

    # -- nesting and parallel instances -----------------------------------------------------

    def _as_step(self, outer: PipelineRun, kwargs: dict) -> Any:
        """A pipeline called inside another: one node whose task is itself a pipeline."""
        name = outer.unique_name(self.settings["name"])

        def runner(parent: str, kwargs: dict) -> str:
            task = self._create_task(kwargs, status=_status.IN_PROGRESS, parent=parent)

            def body() -> None:
                try:
                    self._control(task, kwargs, local_pool=True, parent_run=outer)
                except BaseException:  # recorded on the nested task; the outer node sees it failed
                    log.debug("nested pipeline %s failed", task.id, exc_info=True)

            threading.Thread(target=contextvars.Context().run, args=(body,), daemon=True, name=f"labpipe-nested-{task.id[:8]}").start()
            return task.id

        # the nested run stores its result under its return_value (else "return_object"): read that one
        returns = (self.settings.get("return_value") or "return_object",)
        spec = StepSpec(name=name, kind="pipeline", options=StepOptions(return_values=returns), kwargs=kwargs, runner=runner)
        outer.add(spec)
        outer.start()
        return outer.results(name, returns)

    def _start_parallel(self, kwargs: dict) -> None:
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                box["result"] = self._run(kwargs)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=contextvars.Context().run, args=(body,), daemon=True, name="labpipe-pipeline-instance")
        thread.start()
        self._instances.append((thread, box))
        PipelineDecorator._instances.append((thread, box))
        return None


class PipelineDecorator:
    """Pipelines from functions (ClearML's `PipelineDecorator`)."""

    _mode = "remote"
    _default_queue: str | None = None
    _workers: int | None = None
    _enqueue_only = False
    _attached: str | None = None
    _instances: list[tuple[threading.Thread, dict]] = []

    @classmethod
    def component(
        cls,
        _func: Callable | None = None,
        *,
        return_values: Sequence[str] | str = ("return_object",),
        name: str | None = None,
        cache: bool = False,
        packages: Sequence[str] | str | None = None,
        parents: Sequence[str] | None = None,
        execution_queue: str | None = None,
        continue_on_fail: bool = False,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        task_type: Any = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        helper_functions: Sequence[Callable] | None = None,
        monitor_metrics: list | None = None,
        monitor_artifacts: list | None = None,
        monitor_models: list | None = None,
        retry_on_failure: int | Callable | None = None,
        pre_execute_callback: Callable | None = None,
        post_execute_callback: Callable | None = None,
        status_change_callback: Callable | None = None,
        continue_behaviour: dict | None = None,
        tags: Sequence[str] | None = None,
        draft: bool = False,
        working_dir: str | None = None,
        stage: str | None = None,
        **_ignored: Any,
    ) -> Callable:
        """Make a function a pipeline component (ClearML's arguments; see the README for each).

        Inside a pipeline, a call returns at once a proxy per return value and the function runs as a
        standalone task on a worker (import what it uses inside its body). Outside, a plain call.
        return_values: artifact names for the return value(s). cache: reuse an identical earlier run.
        execution_queue: the queue for this step. continue_on_fail: a failure does not fail the pipeline.
        retry_on_failure: retries (int) or callable(pipeline, node, retries) -> bool.
        pre_execute_callback(pipeline, node, params) -> False skips the step and its subtree.
        """
        options = StepOptions.collect(locals())

        def wrap(func: Callable) -> Component:
            return Component(func, name, options)

        return wrap(_func) if _func is not None else wrap

    @classmethod
    def pipeline(
        cls,
        _func: Callable | None = None,
        *,
        name: str | None = None,
        project: str | None = None,
        version: str | None = None,
        return_value: str | None = None,
        default_queue: str | None = None,
        pool_frequency: float = 0.0,
        add_pipeline_tags: bool = False,
        target_project: str | None = None,
        abort_on_failure: bool = False,
        pipeline_execution_queue: str | None = "services",
        multi_instance_support: bool | str = False,
        add_run_number: bool = True,
        args_map: dict[str, list[str]] | None = None,
        start_controller_locally: bool = False,
        retry_on_failure: int | Callable | None = None,
        enable_local_imports: bool = True,
        tags: Sequence[str] | None = None,
        quiet: bool = False,
        stream_output: bool | None = None,
        **_ignored: Any,
    ) -> Callable:
        """Make a function the pipeline's logic (ClearML's arguments).

        name, project, version: identify the pipeline; without a version, a run takes the newest run's
        version incremented ('1.0.0' -> '1.0.1'), or '1.0.0' for the first, as ClearML does. Its arguments are stored in the
        pipeline task's `Args/` section (or the sections of `args_map`), so a clone with edited
        arguments runs with them. pipeline_execution_queue: where the controller runs in the default
        (remote) mode; None runs the logic here with steps on workers. abort_on_failure: a failed step
        stops everything at once. return_value: artifact name for the function's return value.
        quiet: show no progress (as LABPIPE_PROGRESS=0). stream_output: False leaves the steps' own
        output out of the progress shown (as LABPIPE_STEP_OUTPUT=0); see `labpipe.progress`.
        """
        settings = {k: v for k, v in locals().items() if k not in ("cls", "_func", "_ignored")}
        # No version: each run takes the newest run's version, incremented (1.0.0, 1.0.1, ...), as ClearML does.
        settings["version"] = str(version).strip() if version is not None and str(version).strip() else None
        where = f"pipeline {name!r}"
        for value, kind in ((name, "pipeline"), (project, "project"), (target_project, "project")):
            if value is not None:
                names.check_label(value, kind=kind, where=where)
        if return_value is not None:
            names.check_artifact_name(return_value, where=where)
        for queue in (default_queue, pipeline_execution_queue):
            if queue is not None:
                names.check_queue_name(queue, where=where)

        def wrap(func: Callable) -> PipelineFunction:
            settings["name"] = settings.get("name") or func.__name__
            return PipelineFunction(func, settings)

        return wrap(_func) if _func is not None else wrap

    @classmethod
    def debug_pipeline(cls) -> None:
        """Run pipelines as plain synchronous calls in this process (nothing stored, nothing to set up)."""
        cls._mode = "debug"

    @classmethod
    def run_locally(cls, workers: int | None = None) -> None:
        """Run the controller in this process and every step as a task on the built-in worker pool.

        workers: pool size per step queue (default: one per core).
        """
        cls._mode = "local"
        cls._workers = workers

    @classmethod
    def run_remotely(cls, wait: bool = True) -> None:
        """The default mode: the controller runs as a task on `services` (a built-in pool serves it).

        wait=False enqueues the controller and returns at once, as a ClearML script exits after
        enqueueing; a `labpipe agent --services` daemon then runs it.
        """
        cls._mode = "remote"
        cls._enqueue_only = not wait

    @classmethod
    def set_default_execution_queue(cls, default_execution_queue: str | None) -> None:
        if default_execution_queue is not None:
            names.check_queue_name(default_execution_queue, where="PipelineDecorator.set_default_execution_queue")
        cls._default_queue = default_execution_queue

    @classmethod
    def refresh_cache(cls, steps: bool | Sequence[str] = True) -> None:
        """Re-run cached steps in the next runs: True for all, or names of components to re-run.

        Also settable without touching code: LABPIPE_REFRESH=all or LABPIPE_REFRESH=step_a,step_b.
        """
        request_refresh(steps)

    @classmethod
    def get_current_pipeline(cls) -> PipelineRun | Task | None:
        """The running pipeline (in its logic), or None. In debug mode, where no run schedules steps,
        its pipeline task (it has `.id`, `get_logger()`, `upload_artifact()` like the run's task)."""
        run = current_run()
        if run is not None:
            return run
        task = context_task.get()
        return task if task is not None and task.task_type == "controller" else None

    @classmethod
    def wait_for_multi_pipelines(cls) -> list[Any]:
        """Wait for pipelines started with multi_instance_support='parallel'; returns their results in order."""
        out = []
        for thread, box in cls._instances:
            thread.join()
            if "error" in box:
                raise box["error"]
            out.append(box.get("result"))
        cls._instances = []
        return out

    @classmethod
    def _pipeline_task(cls) -> Task:
        return running_pipeline_task()

    @classmethod
    def get_logger(cls):
        """The pipeline task's Logger (from its logic or from inside a component)."""
        return cls._pipeline_task().get_logger()

    @classmethod
    def upload_artifact(cls, name: str, artifact_object: Any, metadata: dict | None = None, **kwargs: Any) -> bool:
        """Store an artifact on the pipeline task."""
        return cls._pipeline_task().upload_artifact(name, artifact_object, metadata=metadata, **kwargs)

    @classmethod
    def upload_model(cls, model_name: str, model_local_path: str, **_ignored: Any) -> str:
        """Store a model (weights file or folder) on the pipeline task."""
        from ..models import OutputModel

        return OutputModel(task=cls._pipeline_task(), name=model_name).update_weights(weights_filename=model_local_path)

    # -- the rest of ClearML's PipelineDecorator names that mean something offline -------------
    # (the names that do not are in labpipe/offline.py, and raise NotImplementedError saying why)

    #: ClearML's `PipelineDecorator.Node` (the same class as `PipelineController.Node`)
    Node = Node
    #: the statuses a Node can have, as ClearML lists them
    valid_job_status = list(NODE_STATUSES)

    @classmethod
    def add_tags(cls, tags: str | Sequence[str]) -> None:
        """Add tags to the running pipeline's task (from its logic or from inside a component)."""
        cls._pipeline_task().add_tags([tags] if isinstance(tags, str) else list(tags))

    @classmethod
    def get(cls, pipeline_id: str | None = None, pipeline_project: str | None = None, pipeline_name: str | None = None,
            pipeline_version: str | None = None, pipeline_tags: Sequence[str] | None = None) -> Task:
        """A pipeline run's task, as `PipelineController.get`."""
        return find_pipeline(pipeline_id, pipeline_project, pipeline_name, pipeline_version, pipeline_tags)

    @classmethod
    def clone(cls, pipeline: Task | str, name: str | None = None, parameters: dict | None = None) -> Task:
        """A new draft of a pipeline run, as `PipelineController.clone`."""
        return clone_pipeline(pipeline, name=name, parameters=parameters)

    @classmethod
    def enqueue(cls, pipeline: Task | str, queue_name: str = "services") -> Task:
        """Enqueue a pipeline run for a services worker, as `PipelineController.enqueue`."""
        return Task.enqueue(pipeline, queue_name=queue_name)



# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(PipelineDecorator, "PipelineDecorator")
