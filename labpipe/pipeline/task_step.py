"""Launching a step that is an existing task (PipelineController.add_step): clone, override, enqueue.

Also the resolver for ClearML's `${step.field}` references, shared with function steps: a reference
reads the pipeline's parameters or a finished step's task (parameters, artifacts, models, fields).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError, TaskNotFound, Unfingerprintable
from ..store import pipelines, tasks
from ..task import Task
from . import references

if TYPE_CHECKING:
    from ..store.records import TaskRow
    from .dag import Node
    from .run import PipelineRun
    from .step import StepSpec

_TASK_FIELDS = {
    "id": "id", "name": "name", "project": "project", "type": "type", "status": "status", "comment": "comment",
    "parent": "parent", "tags": "tags", "system_tags": "system_tags", "started": "started", "completed": "completed",
    "status_message": "status_message", "queue": "queue",
}


def make_resolver(run: PipelineRun, params: dict[str, Any]):
    """A function that turns one `Ref` into its value, reading finished steps' tasks from the store."""
    def resolve_ref(ref: references.Ref) -> Any:
        if ref.step == "pipeline":
            if ref.path == ("id",):
                return run.task.id
            key = ref.name
            if key not in params:
                raise PipelineError(f"reference {ref.text}: the pipeline has no parameter {key!r}; it has {', '.join(params) or 'none'}")
            return params[key]
        if ref.step not in run.dag:
            raise PipelineError(f"reference {ref.text}: there is no step {ref.step!r}")
        node = run.dag[ref.step]
        if node.task_id is None:
            raise PipelineError(f"reference {ref.text}: step {ref.step!r} has no task (it was {node.status})")
        task = Task.get_task(task_id=node.task_id)
        kind, path = ref.kind, ref.path
        if kind == "parameter":
            name = ref.name
            stored = task.get_parameters(cast=True)
            if name not in stored:
                raise PipelineError(f"reference {ref.text}: step {ref.step!r} has no parameter {name!r}; it has {', '.join(stored) or 'none'}")
            return stored[name]
        if kind == "artifact":
            name, field = ref.name, ref.field or "url"
            arts = task.artifacts
            if name not in arts:
                raise PipelineError(f"reference {ref.text}: step {ref.step!r} has no artifact {name!r}; it has {', '.join(arts) or 'none'}")
            art = arts[name]
            return {"url": art.url, "hash": art.hash, "size": art.size, "preview": art.preview, "type": art.type}.get(field, art.url)
        if kind == "model":
            models = task.models[ref.model_type or "output"]
            selector, field = ref.name or "-1", ref.field or "url"
            try:
                model = models[int(selector)] if selector.lstrip("-").isdigit() else models[selector]
            except (IndexError, KeyError):
                raise PipelineError(f"reference {ref.text}: step {ref.step!r} has no {ref.model_type} model {selector!r}") from None
            return getattr(model, field)
        if kind == "task_field":
            field = ref.field or path[0]
            return getattr(task.data, _TASK_FIELDS.get(field, field), None)
        if kind == "return_value":
            return task.artifacts[ref.name].get()
        raise PipelineError(f"reference {ref.text} cannot be resolved")

    return resolve_ref


def launch_task_step(run: PipelineRun, spec: StepSpec, node: Node) -> None:
    """Clone the step's base task, apply its overrides (references resolved now), enqueue it."""
    resolver = run._resolver()
    overrides = references.resolve(dict(spec.parameter_override), resolver)
    if not run._pre_execute(spec, node, overrides):
        return
    base = _base_task(spec, node)
    queue = references.resolve(spec.queue, resolver) if spec.queue else None
    key = None
    if spec.cache:
        key = _cache_key(base, overrides, spec)
        if key is not None and not run._refreshing(spec.name):
            found = pipelines.find_cached_outputs(run.db, key)  # a hit whose outputs are gone is a miss
            if found is not None:
                hit, run._hashes[node.name] = found
                run._set(node.name, "cached", task_id=hit.id, started=hit.started, completed=hit.completed)
                run._after_success(node.name)
                return
    if spec.clone_base_task:
        task = Task.clone(base, name=spec.task_name or spec.name, parent=run.task.id,
                          project=run.target_project or run.task.project)
    else:
        task = base
        if task.get_status() != "created":
            task.reset(force=True)
    if overrides:
        task.update_parameters(overrides)
    tags = run._step_tags(spec)
    configuration = references.resolve(dict(spec.configuration_overrides), resolver) if spec.configuration_overrides else None
    task_overrides = references.resolve(dict(spec.task_overrides), resolver)

    def change(row: TaskRow) -> dict[str, Any]:
        # from the row as it is now (read in the updating transaction): a base task used in place may
        # be edited by another process meanwhile
        fields: dict[str, Any] = {"parent": run.task.id}
        if key is not None:
            fields["cache_key"] = key
        if tags:
            fields["tags"] = list(dict.fromkeys([*row.tags, *tags]))
        if configuration is not None:  # what the step's connect_configuration(name=...) then receives
            script = dict(fields.get("script") or row.script)
            known = dict(script.get("configurations") or {})
            for cname, value in configuration.items():
                before = known.get(cname) or {}
                known[cname] = {"type": "dictionary" if isinstance(value, dict | list) else before.get("type", "text"),
                                "description": before.get("description", ""),
                                "value": value if isinstance(value, dict | list) else str(value)}
            script["configurations"] = known
            fields["script"] = script
        _apply_task_overrides(row, task_overrides, fields)
        return fields

    task._row = tasks.modify_task(run.db, task.id, change)
    node.task_id = task.id
    if queue:
        spec.queue = queue
        node.queue = queue
    run._enqueue(task, spec, node)


def _base_task(spec: StepSpec, node: Node) -> Task:
    if spec.runner is not None:  # base_task_factory(node) -> Task
        task = spec.runner(node)
        if not isinstance(task, Task):
            raise PipelineError(f"step {spec.name!r}: base_task_factory returned {type(task).__name__}, expected a Task")
        return task
    try:
        return Task.get_task(task_id=spec.base_task_id)
    except TaskNotFound as exc:
        raise TaskNotFound(f"step {spec.name!r}: base task not found: {exc}") from None


def _apply_task_overrides(row: TaskRow, overrides: dict, fields: dict) -> None:
    """ClearML's task_overrides: dotted task fields, e.g. {'name': ..., 'script.branch': ...}."""
    script = dict(fields.get("script") or row.script)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head == "script" and rest:
            script[rest] = value
            fields["script"] = script
        elif head in ("name", "comment", "tags") and not rest:
            fields[head] = value
        elif head == "project" and not rest:
            fields["project"] = value
        else:
            raise PipelineError(f"task_overrides key {key!r} is not supported; use name, comment, tags, project or script.<field>")


def _cache_key(base: Task, overrides: dict, spec: StepSpec) -> str | None:
    """A task step's cache key: the base task's definition and parameters after overrides."""
    from ..fingerprint import fingerprint
    from ..hashing import hash_bytes

    params = dict(base.get_parameters(cast=True))
    params.update(overrides)
    try:
        digest = fingerprint({"script": base.data.script, "params": params, "config": spec.configuration_overrides,
                              "task_overrides": spec.task_overrides})
    except Unfingerprintable:
        return None
    return hash_bytes(b"labpipe.task_step.v1", digest.encode(), json.dumps(base.data.type).encode())

