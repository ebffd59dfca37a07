"""One record of a pipeline step's options, as ClearML names them: declared once, read everywhere.

`PipelineDecorator.component()`, `PipelineController.add_function_step()` and `add_step()` each
collect their arguments into a `StepOptions`; the same record then travels to the launcher
(`labpipe.pipeline.launch`), the cache (`labpipe.pipeline.cache`) and the function-task builder
(`labpipe.function_task`). A few of ClearML's arguments have two spellings across its APIs; they
meet here under one field (`RENAMED`).

Below `task.py` and `pipeline/`: imports nothing of labpipe but `errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import PipelineError

#: ClearML's continue_behaviour keys and their defaults when continue_on_fail is False.
CONTINUE_KEYS = ("continue_on_fail", "continue_on_abort", "skip_children_on_fail", "skip_children_on_abort")

#: ClearML's other spellings of a field, by API: add_function_step / add_step say these.
RENAMED = {"cache_executed_step": "cache", "function_return": "return_values", "base_task_factory": "task_factory"}

DEFAULT_RETURN = ("return_object",)

#: the fields that hold sequences (a lone string counts as one item)
_SEQUENCES = ("return_values", "helper_functions", "parents", "monitor_metrics", "monitor_artifacts", "monitor_models", "tags")


@dataclass(frozen=True)
class StepOptions:
    """A step's options, each with its ClearML meaning. Frozen: a launch never edits what was declared.

    What runs and what it returns:
        return_values: artifact names the result is stored under; several unpack a returned tuple, ()
            stores nothing (ClearML's `return_values` / `function_return`).
        helper_functions: other functions defined next to the step's function on the worker.
        task_type, task_name: the step task's type and name (the step's name by default).
        packages: requirements (a list or a requirements.txt path); None detects them from imports.
        docker, docker_args, docker_bash_setup_script: recorded for the agent, as in ClearML.
        repo, repo_branch, repo_commit: run in a checkout of this repository at that branch or commit.
        working_dir: the folder the step runs in (default: its function's folder).
    Where and when:
        execution_queue: the queue the step goes to (the pipeline's default queue if None); may be a
            `${...}` reference in a controller.
        parents: steps that must finish first, besides those whose results it takes.
        stage: a label grouping steps in pictures and listings.
        draft: create the step's task but do not run it.
        time_limit: seconds before a running step is stopped (controller steps).
    Caching:
        cache: reuse an earlier identical run's results (`cache` / `cache_executed_step`).
    Failure policy:
        continue_on_fail, continue_behaviour: see `behaviour()`.
        retry_on_failure: retries (an int), or callable(pipeline, node, retries) -> bool.
    Callbacks (each receives the pipeline object and the node):
        pre_execute_callback(pipeline, node, params) -> False skips the step and its subtree;
        post_execute_callback(pipeline, node); status_change_callback(pipeline, node, previous_status).
    Copied onto the pipeline task when the step succeeds:
        monitor_metrics, monitor_artifacts, monitor_models.
    Tags: tags given to the step's task.
    Steps that are existing tasks (add_step):
        base_task_id: the task to clone; task_factory(node) -> Task makes one instead
            (ClearML's `base_task_factory`).
        parameter_override: {'Section/name': value}, applied to the clone.
        configuration_overrides: {name: value}, what the clone's connect_configuration(name=) returns.
        task_overrides: dotted task fields set on the clone ('name', 'script.branch', ...).
        clone_base_task: False runs the base task itself (reset) instead of a clone.
    """

    return_values: tuple[str, ...] = DEFAULT_RETURN
    helper_functions: tuple[Callable, ...] = ()
    task_type: Any = None
    task_name: str | None = None
    packages: list[str] | str | None = None
    docker: str | None = None
    docker_args: str | None = None
    docker_bash_setup_script: str | None = None
    repo: str | None = None
    repo_branch: str | None = None
    repo_commit: str | None = None
    working_dir: str | None = None
    execution_queue: str | None = None
    parents: tuple[str, ...] = ()
    stage: str | None = None
    draft: bool = False
    time_limit: float | None = None
    cache: bool = False
    continue_on_fail: bool = False
    continue_behaviour: Mapping[str, bool] | None = None
    retry_on_failure: int | Callable | None = None
    pre_execute_callback: Callable | None = None
    post_execute_callback: Callable | None = None
    status_change_callback: Callable | None = None
    monitor_metrics: tuple = ()
    monitor_artifacts: tuple = ()
    monitor_models: tuple = ()
    tags: tuple[str, ...] = ()
    base_task_id: str | None = None
    task_factory: Callable | None = None
    parameter_override: Mapping[str, Any] = field(default_factory=dict)
    configuration_overrides: Mapping[str, Any] = field(default_factory=dict)
    task_overrides: Mapping[str, Any] = field(default_factory=dict)
    clone_base_task: bool = True

    @classmethod
    def collect(cls, arguments: Mapping[str, Any]) -> StepOptions:
        """The options among an API call's arguments (its `locals()`): known names are taken, ClearML's
        other spellings (`RENAMED`) mapped, everything else (the step's name, its function...) left.
        None means "not given" and keeps the default; sequences become tuples, mappings copies."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in arguments.items():
            key = RENAMED.get(key, key)
            if key not in known or value is None:
                continue
            if key in _SEQUENCES:
                value = (value,) if isinstance(value, str) else tuple(value)
            elif key in ("parameter_override", "configuration_overrides", "task_overrides"):
                value = dict(value)
            values[key] = value
        return cls(**values)

    def behaviour(self, step: str) -> dict[str, bool]:
        """The effective continue_behaviour, ClearML's defaults filled in. `step` names the step in the
        error an unknown key raises."""
        out = {
            "continue_on_fail": bool(self.continue_on_fail),
            "continue_on_abort": False,
            "skip_children_on_fail": True,
            "skip_children_on_abort": True,
        }
        for key, value in (self.continue_behaviour or {}).items():
            if key not in CONTINUE_KEYS:
                raise PipelineError(f"step {step!r}: continue_behaviour key {key!r} is unknown; expected {', '.join(CONTINUE_KEYS)}")
            out[key] = bool(value)
        return out
