"""Drawing a stored pipeline run's DAG to PNG, and keeping the picture on the pipeline task.

Drawn on demand (`labpipe plot ID`, `plot_dag()`), not at the end of every run: importing matplotlib
and drawing costs about a second, more than a whole cached pipeline run. The first drawing of a
finished run is stored as a plot on its task (ClearML's RESULTS > PLOTS) and reused.
"""

from __future__ import annotations

import os

from ..errors import LabpipeError, PipelineError
from ..store import blobs, outputs, pipelines, tasks
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
    nodes = pipelines.load_nodes(task.db, task.id)
    dag = DAG()
    for n in nodes:
        dag.add_deferred(Node(name=n["name"], parents=n["parents"], status=n["status"], task_id=n["task"], kind=n["kind"],
                              queue=n["queue"], started=n["started"], completed=n["completed"], error=n["error"],
                              stage=n["stage"], extra=n["extra"]))
    for node in dag:  # a failed step's root cause is what its task recorded (as `labpipe show` has it)
        if node.status == "failed" and node.task_id:
            try:
                error = tasks.get_task(task.db, node.task_id).runtime.get("error")
            except LabpipeError:
                error = None
            if error and error.get("type"):
                node.error = f"{error['type']}: {error.get('message', '')}".rstrip(": ")
    return dag


def plot_pipeline(pipeline_id: str, path: str | os.PathLike | None = None, fmt: str = "png") -> bytes:
    """The run's DAG as PNG bytes (or svg, dot, mermaid: see dag_formats), written to `path` if given.

    A finished run's PNG is stored on its task once and reused.
    """
    from .dag_formats import render_dag
    from .dag_plot import plot_dag

    task = Task.get_task(task_id=pipeline_id)
    dag = load_dag(pipeline_id)
    title = f"{task.project}/{task.name}  [{task.get_status()}]"
    if fmt != "png":
        data = render_dag(dag, fmt, title=title)
        if path is not None:
            with open(path, "wb") as fh:
                fh.write(data)
        return data
    db = get_database()
    finished = task.get_status() in ("completed", "failed", "stopped", "published")
    stored = [r for r in outputs.get_plots(db, task.id) if r["title"] == PLOT_TITLE and r["series"] == PLOT_SERIES]
    if finished and stored:
        png = bytes(blobs.read(db, stored[-1]["hash"], what=f"DAG plot of pipeline {task.id}"))
    else:
        png = plot_dag(dag, title=title)
        if finished:
            outputs.add_plot(db, task.id, PLOT_TITLE, PLOT_SERIES, 0, "image", blobs.prepare(db, [png]))
    if path is not None:
        with open(path, "wb") as fh:
            fh.write(png)
    return png
