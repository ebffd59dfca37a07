"""monitor_metrics / monitor_artifacts / monitor_models: copying what a step reported onto the pipeline task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..store import outputs
from ..store.blobs import BlobRef
from ..task import Task
from .step import metric_pairs, monitor_pairs

if TYPE_CHECKING:
    from ..store.db import Database
    from .step import StepSpec


def copy_monitored(db: Database, spec: StepSpec, step_task_id: str, pipeline_task_id: str) -> None:
    """Copy the step's monitored metrics, artifacts and models to the pipeline task (no bytes are copied:
    artifacts and models point at the same blobs)."""
    if not (spec.options.monitor_metrics or spec.options.monitor_artifacts or spec.options.monitor_models):
        return
    if spec.options.monitor_metrics:
        reported = Task.get_task(task_id=step_task_id).get_reported_scalars()
        rows = []
        for (title, series), (t_title, t_series) in metric_pairs(spec.options.monitor_metrics, spec.name):
            points = reported.get(title, {}).get(series)
            if points:
                rows += [(t_title, t_series, x, y) for x, y in zip(points["x"], points["y"], strict=True)]
        if rows:
            outputs.add_scalars(db, pipeline_task_id, rows)
    for source, target in monitor_pairs(spec.options.monitor_artifacts, "monitor_artifacts", spec.name):
        outputs.copy_artifact(db, step_task_id, source, pipeline_task_id, target)
    if spec.options.monitor_models:
        models = list(outputs.get_models(db, step_task_id))
        for source, target in monitor_pairs(spec.options.monitor_models, "monitor_models", spec.name):
            for row in pick_models(models, source):
                ref = BlobRef(row["hash"], row["size"]) if row["hash"] else None
                outputs.put_model(db, pipeline_task_id, row["name"] if target == source else target, ref,
                                  framework=row["framework"], filename=row["filename"])


def pick_models(models: list, pattern: str) -> list:
    """ClearML's monitor_models selection: a name, 'prefix_*' (latest lexicographic match) or '*' (last created)."""
    if pattern == "*":
        return models[-1:]
    if pattern.endswith("*"):
        matches = sorted((m for m in models if m["name"].startswith(pattern[:-1])), key=lambda m: m["name"])
        return matches[-1:]
    return [m for m in models if m["name"] == pattern][-1:]
