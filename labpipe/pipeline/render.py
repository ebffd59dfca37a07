"""Drawing a stored pipeline run's DAG to PNG, and keeping the picture on the pipeline task.

Drawn on demand (`labpipe plot ID`, `plot_dag()`), not at the end of every run: importing matplotlib
and drawing costs about a second, more than a whole cached pipeline run. The first drawing of a
finished run is stored as a plot on its task (ClearML's RESULTS > PLOTS) and reused.
"""

from __future__ import annotations

import os

from ..errors import PipelineError
from ..store import blobs, outputs, pipelines
from ..store.db import get_database
from ..task import Task
from .dag import DAG, Node

PLOT_TITLE = "Pipeline"
PLOT_SERIES = "DAG"


def load_dag(pipeline_id: str) -> DAG:
    """The DAG of a pipeline run as recorded in the store. PipelineError if it is not a pipeline."""
    task = Task.get_task(task_id=pipeline_id)
    if task.task_type != "controller" and "pipeline" not in task.data.system_tags:
        raise PipelineError(f"task {pipeline_id} ({task.name!r}) is not a pipeline run (its type is {task.task_type!r})")
    nodes = pipelines.load_nodes(task._db, task.id)
    dag = DAG()
    for n in nodes:
        dag.add_deferred(Node(name=n["name"], parents=n["parents"], status=n["status"], task_id=n["task"], kind=n["kind"],
                              queue=n["queue"], started=n["started"], completed=n["completed"], error=n["error"],
                              stage=n["stage"], extra=n["extra"]))
    return dag


def plot_pipeline(pipeline_id: str, path: str | os.PathLike | None = None) -> bytes:
    """PNG bytes of the run's DAG (written to `path` if given); stored on the task once the run ended."""
    from .dag_plot import plot_dag

    task = Task.get_task(task_id=pipeline_id)
    dag = load_dag(pipeline_id)
    db = get_database()
    finished = task.get_status() in ("completed", "failed", "stopped", "published")
    stored = [r for r in outputs.get_plots(db, task.id) if r["title"] == PLOT_TITLE and r["series"] == PLOT_SERIES]
    if finished and stored:
        png = bytes(blobs.read(db, stored[-1]["hash"], what=f"DAG plot of pipeline {task.id}"))
    else:
        png = plot_dag(dag, title=f"{task.project}/{task.name}  [{task.get_status()}]")
        if finished:
            outputs.add_plot(db, task.id, PLOT_TITLE, PLOT_SERIES, 0, "image", blobs.prepare(db, [png]))
    if path is not None:
        with open(path, "wb") as fh:
            fh.write(png)
    return png
