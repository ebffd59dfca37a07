"""The launcher: one step, ready to run, becomes an outcome. Every kind of step goes through `launch`.

`launch(spec, node, context)` runs the step's pre-execute callbacks, asks the cache, and either
reuses an earlier task or creates the step's task and enqueues it:
- a function step (component, `add_function_step`): a function task made from its source;
- a task step (`add_step`): a clone of its base task with its overrides (or the base task, reset);
- a nested pipeline: its runner starts it.

It returns what happened (`Skipped`, `Cached`, `Queued`, `Running`, `Waiting`) and changes nothing of
the run: `PipelineRun` applies the outcome to its DAG. An error raised here (a bad reference, a
callback that raised, a missing base task) fails the step; the run applies its failure policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import BlobCorrupted, PipelineError, TaskNotFound
from ..store import tasks
from ..task import Task
from . import references
from .proxy import is_result

if TYPE_CHECKING:
    from ..store.db import Database
    from ..store.pipelines import CacheHit
    from ..store.records import TaskRow
    from .cache import RunCache
    from .dag import DAG, Node
    from .step import StepSpec

# ---------------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Skipped:
    """The step does not run: a pre-execute callback said so (its subtree is skipped too), or it is a
    draft (its task was created, `task_id`, and left unrun)."""

    reason: str
    subtree: bool = False
    task_id: str | None = None


@dataclass(frozen=True)
class Cached:
    """An identical earlier call's task serves the step."""

    hit: CacheHit


@dataclass(frozen=True)
class Queued:
    """The step's task waits on `queue` for a worker."""

    task_id: str
    queue: str


@dataclass(frozen=True)
class Running:
    """The step (a nested pipeline) runs already, as task `task_id` since `started`."""

    task_id: str
    started: float


@dataclass(frozen=True)
class Waiting:
    """Not yet: cached inputs of this step were found damaged. The parents in `reopen` must run again
    first (empty: the run already sent them back); the step stays pending until they are done."""

    reopen: tuple[str, ...] = ()


Outcome = Skipped | Cached | Queued | Running | Waiting


@dataclass
class LaunchContext:
    """What a launch reads of its pipeline run (it writes none of it).

    resolve: turns a `${...}` reference into its value (`resolver.make_resolver`).
    callbacks: the run's own pre-launch callbacks (ClearML's step_task_created_callback), after the
        step's pre_execute_callback; each gets (owner, node, parameters) and may return False.
    local_queue: every step goes there (run_pipeline_steps_locally), whatever it asked.
    pipeline_tag: added to every step task's tags (add_pipeline_tags), or None.
    """

    db: Database
    pipeline_id: str
    project: str
    default_queue: str
    dag: DAG
    cache: RunCache
    resolve: Callable[[references.Ref], Any]
    owner: Any
    callbacks: tuple[Callable, ...] = ()
    local_queue: str | None = None
    local_imports: bool = True
    pipeline_tag: str | None = None

    def queue_for(self, spec: StepSpec) -> str:
        """The queue a step goes to: the local one, its own (a reference resolved now), or the default."""
        if self.local_queue:  # run_pipeline_steps_locally: only this process's pool may run the steps
            return self.local_queue
        queue = spec.options.execution_queue or self.default_queue
        if "${" in queue:  # execution_queue may be a reference, e.g. "${pipeline.queue}"
            queue = str(references.resolve(queue, self.resolve))
        return queue

    def tags_for(self, spec: StepSpec) -> list[str]:
        return [*spec.options.tags, *([self.pipeline_tag] if self.pipeline_tag else [])]


def launch(spec: StepSpec, node: Node, context: LaunchContext) -> Outcome:
    """Launch one ready step (its parents all succeeded); returns what happened."""
    if spec.kind == "function":
        return _function_step(spec, node, context)
    if spec.kind == "pipeline":
        return _nested_pipeline(spec, node, context)
    return _task_step(spec, node, context)


def _pre_execute(spec: StepSpec, node: Node, context: LaunchContext, parameters: dict) -> Skipped | None:
    """The pre-launch callbacks; one that returns False skips this node and its subtree."""
    for cb in (spec.options.pre_execute_callback, *context.callbacks):
        if cb is not None and cb(context.owner, node, parameters) is False:
            return Skipped("skipped by its pre-execute callback", subtree=True)
    return None


# ---------------------------------------------------------------------------------- function steps


def _function_step(spec: StepSpec, node: Node, context: LaunchContext) -> Outcome:
    from ..function_task import ArtifactRef, build_function_task

    literal, refs, fingerprinted = {}, {}, {}
    for key, value in spec.kwargs.items():
        if is_result(value):
            refs[key] = ArtifactRef(context.dag[value.step_name].task_id, value.artifact_name)
        else:
            try:
                value = _resolve_nested(value)
            except BlobCorrupted:
                if any(context.dag[p].status == "pending" for p in node.parents):
                    return Waiting()  # a cached parent's value was corrupt: it runs again, this step waits for it
                raise
            if spec.references:
                value = references.resolve(value, context.resolve)
            literal[key] = value
        fingerprinted[key] = spec.arg_fingerprints.get(key, value)
    shown = dict(literal, **{k: f"${{{r.task_id}.{r.artifact}}}" for k, r in refs.items()})
    skipped = _pre_execute(spec, node, context, shown)
    if skipped is not None:
        return skipped
    options = spec.options
    key = context.cache.call_key(spec.name, spec.code_key, fingerprinted) if options.cache else None
    hit = context.cache.lookup(spec.name, key, options.return_values)
    if hit is not None:
        return Cached(hit)
    damaged = context.cache.damaged_inputs(spec, context.dag)
    if damaged:
        return Waiting(tuple(damaged))
    queue = context.queue_for(spec)
    if context.pipeline_tag:  # the same tags a task step's task gets
        options = replace(options, tags=tuple(context.tags_for(spec)))
    row = build_function_task(
        spec.function, dict(literal, **refs), options, project=context.project, parent=context.pipeline_id,
        cache_key=key, queue=None if options.draft else queue, local_imports=context.local_imports, db=context.db,
    )
    if options.draft:
        return Skipped("draft step: created, not run", task_id=row.id)
    return Queued(row.id, queue)


def _resolve_nested(value: Any) -> Any:
    """Proxies inside containers are loaded here (only top-level ones travel by reference)."""
    if isinstance(value, (list, tuple, set)) and any(is_result(v) for v in value):
        return type(value)(v._resolve() if is_result(v) else v for v in value)
    if isinstance(value, dict) and any(is_result(v) for v in value.values()):
        return {k: (v._resolve() if is_result(v) else v) for k, v in value.items()}
    return value


# -------------------------------------------------------------------------------- nested pipelines


def _nested_pipeline(spec: StepSpec, node: Node, context: LaunchContext) -> Outcome:
    skipped = _pre_execute(spec, node, context, dict(spec.kwargs))
    if skipped is not None:
        return skipped
    kwargs = {k: _resolve_nested(v._resolve() if is_result(v) else v) for k, v in spec.kwargs.items()}
    return Running(spec.runner(parent=context.pipeline_id, kwargs=kwargs), time.time())


# -------------------------------------------------------------------------------------- task steps


def _task_step(spec: StepSpec, node: Node, context: LaunchContext) -> Outcome:
    """Clone the step's base task, apply its overrides (references resolved now), enqueue the clone."""
    options = spec.options
    overrides = references.resolve(dict(options.parameter_override), context.resolve)
    skipped = _pre_execute(spec, node, context, overrides)
    if skipped is not None:
        return skipped
    base = _base_task(spec, node)
    key = context.cache.task_step_key(spec.name, base, overrides, options) if options.cache else None
    hit = context.cache.lookup(spec.name, key)  # a hit whose outputs are gone is a miss
    if hit is not None:
        return Cached(hit)
    if options.clone_base_task:
        task = Task.clone(base, name=options.task_name or spec.name, parent=context.pipeline_id, project=context.project)
    else:
        task = base
        if task.get_status() != "created":
            task.reset(force=True)
    if overrides:
        task.update_parameters(overrides)
    configuration = (references.resolve(dict(options.configuration_overrides), context.resolve)
                     if options.configuration_overrides else None)
    edits = _TaskEdits(context.pipeline_id, key, context.tags_for(spec), configuration,
                       references.resolve(dict(options.task_overrides), context.resolve))
    tasks.modify_task(context.db, task.id, edits.apply)
    queue = context.queue_for(spec)
    if options.draft:
        return Skipped("draft step: created, not run", task_id=task.id)
    Task.enqueue(task.id, queue_name=queue)
    return Queued(task.id, queue)


def _base_task(spec: StepSpec, node: Node) -> Task:
    factory = spec.options.task_factory
    if factory is not None:  # base_task_factory(node) -> Task
        task = factory(node)
        if not isinstance(task, Task):
            raise PipelineError(f"step {spec.name!r}: base_task_factory returned {type(task).__name__}, expected a Task")
        return task
    try:
        return Task.get_task(task_id=spec.options.base_task_id)
    except TaskNotFound as exc:
        raise TaskNotFound(f"step {spec.name!r}: base task not found: {exc}") from None


@dataclass(frozen=True)
class _TaskEdits:
    """What a task step changes on its task, applied to the row as it is in the updating transaction
    (a base task used in place may be edited by another process meanwhile)."""

    parent: str
    cache_key: str | None
    tags: list[str]
    configuration: dict | None
    task_overrides: dict

    def apply(self, row: TaskRow) -> dict[str, Any]:
        fields: dict[str, Any] = {"parent": self.parent}
        if self.cache_key is not None:
            fields["cache_key"] = self.cache_key
        if self.tags:
            fields["tags"] = list(dict.fromkeys([*row.tags, *self.tags]))
        if self.configuration is not None:  # what the step's connect_configuration(name=...) then receives
            fields["script"] = _with_configurations(dict(row.script), self.configuration)
        _apply_task_overrides(row, self.task_overrides, fields)
        return fields


def _with_configurations(script: dict, configuration: dict) -> dict:
    known = dict(script.get("configurations") or {})
    for name, value in configuration.items():
        before = known.get(name) or {}
        known[name] = {"type": "dictionary" if isinstance(value, dict | list) else before.get("type", "text"),
                       "description": before.get("description", ""),
                       "value": value if isinstance(value, dict | list) else str(value)}
    script["configurations"] = known
    return script


def _apply_task_overrides(row: TaskRow, overrides: dict, fields: dict) -> None:
    """ClearML's task_overrides: dotted task fields, e.g. {'name': ..., 'script.branch': ...}."""
    script = dict(fields.get("script") or row.script)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head == "script" and rest:
            script[rest] = value
            fields["script"] = script
        elif head in ("name", "comment", "tags", "project") and not rest:
            fields[head] = value
        else:
            raise PipelineError(f"task_overrides key {key!r} is not supported; use name, comment, tags, project or script.<field>")
