"""A pipeline run as the base task of another controller's step: the nested run shows as one node
whose task is itself a pipeline, and it runs with the step's parameter overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from labpipe import PipelineController, StepFailed, Task
from labpipe.store import pipelines
from labpipe.store.db import get_database

INNER = textwrap.dedent("""
    import sys
    from labpipe import PipelineController

    def double(x: int = 1):
        return 2 * x

    pipe = PipelineController(name="inner", project="e2e", version="1")
    pipe.add_parameter("x", 1)
    pipe.add_function_step("double", double, function_kwargs={"x": "${pipeline.x}"}, function_return=["y"],
                           monitor_artifacts=[("y", "result")])
    sys.exit(0 if pipe.start_locally() else 1)
""")


def test_a_pipeline_run_is_the_base_task_of_another_pipelines_step(tmp_path, store, stop_shared_pool):
    script = tmp_path / "inner.py"
    script.write_text(INNER)
    subprocess.run([sys.executable, str(script)], env=dict(os.environ), check=True, capture_output=True, timeout=120)
    (inner,) = [t for t in Task.get_tasks(project_name="e2e") if t.task_type == "controller"]
    assert inner.artifacts["result"].get() == 2

    outer = PipelineController(name="outer", project="e2e", version="1")
    outer.add_step("nested", base_task_id=inner.id, parameter_override={"Args/x": 21}, monitor_artifacts=["result"])
    assert outer.start_locally() is True
    node = outer.get_pipeline_dag()["nested"]
    nested = Task.get_task(task_id=node.task_id)
    assert nested.task_type == "controller" and nested.parent == outer.id and nested.id != inner.id
    assert nested.artifacts["result"].get() == 42 and outer.task.artifacts["result"].get() == 42
    assert [n["name"] for n in pipelines.load_nodes(get_database(), nested.id)] == ["double"]


def test_pipeline_execution_time_limit_stops_the_run(store, stop_shared_pool):
    from pipeline_components import slow

    pipe = PipelineController(name="limited", project="e2e", version="1")
    pipe.add_function_step("slow", slow, function_kwargs={"seconds": 30})
    pipe.set_pipeline_execution_time_limit(1 / 60)  # one second
    with pytest.raises(StepFailed, match="time limit"):
        pipe.start_locally()
    assert pipe.task.get_status() == "failed" and "time limit" in pipe.task.get_status_message()
    assert pipe.get_pipeline_dag()["slow"].status == "aborted"
