"""The resolver of ClearML's `${step.field}` references at launch, shared by every kind of step.

A reference reads the pipeline's parameters (`${pipeline.lr}`, `${pipeline.id}`) or a finished step's
task: its parameters, artifacts, models, return values and task fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError
from ..task import Task
from . import references

if TYPE_CHECKING:
    from .dag import DAG

_TASK_FIELDS = {
    "id": "id", "name": "name", "project": "project", "type": "type", "status": "status", "comment": "comment",
    "parent": "parent", "tags": "tags", "system_tags": "system_tags", "started": "started", "completed": "completed",
    "status_message": "status_message", "queue": "queue",
}


def make_resolver(pipeline_id: str, params: dict[str, Any], dag: DAG) -> Callable[[references.Ref], Any]:
    """A function that turns one `Ref` into its value: `${pipeline.x}` from the run's parameters, a
    step's fields, parameters, artifacts and models from its task in the store (read when asked)."""
    def resolve_ref(ref: references.Ref) -> Any:
        if ref.step == "pipeline":
            if ref.path == ("id",):
                return pipeline_id
            key = ref.name
            if key not in params:
                raise PipelineError(f"reference {ref.text}: the pipeline has no parameter {key!r}; it has {', '.join(params) or 'none'}")
            return params[key]
        if ref.step not in dag:
            raise PipelineError(f"reference {ref.text}: there is no step {ref.step!r}")
        node = dag[ref.step]
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
