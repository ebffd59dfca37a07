"""Task.execute_remotely: a script registers itself as a template (ClearML's step1/2/3 scripts), which a
worker or a PipelineController step then runs, with execute_remotely doing nothing there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labpipe import PipelineController, Task
from labpipe.agent.pool import Pool

SCRIPT = """
import sys
from labpipe import Task
Task.add_requirements("packaging")
task = Task.init(project_name="templates", task_name="step one")
args = task.connect({"rows": 3})
task.execute_remotely(queue_name=QUEUE)
task.upload_artifact("rows", list(range(args["rows"])))
print("ran with", args["rows"], "rows")
"""


def _register(tmp_path, queue=None):
    script = tmp_path / "step_one.py"
    script.write_text(SCRIPT.replace("QUEUE", repr(queue)))
    return subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=60)


def test_a_script_registers_itself_as_a_draft_and_exits_0(tmp_path):
    proc = _register(tmp_path)
    assert proc.returncode == 0, proc.stderr
    (task,) = Task.get_tasks(project_name="templates")
    assert task.status == "created" and "left as a draft" in proc.stderr and "ran with" not in proc.stdout
    assert task.get_parameters(cast=True) == {"General/rows": 3}
    assert task.data.script["entry_point"].endswith("step_one.py") and task.data.script["packages"] == ["packaging"]
    assert task.artifacts == {}


def test_a_registered_template_is_a_pipeline_step_and_execute_remotely_does_nothing_there(tmp_path, stop_shared_pool):
    assert _register(tmp_path).returncode == 0
    pipe = PipelineController(name="from templates", project="templates", version="1.0")
    pipe.add_step("one", base_task_project="templates", base_task_name="step one", parameter_override={"General/rows": 5})
    assert pipe.start_locally() is True
    step = Task.get_task(task_id=pipe.get_pipeline_dag()["one"].task_id)
    assert step.artifacts["rows"].get() == [0, 1, 2, 3, 4] and "ran with 5 rows" in step.get_console()


def test_execute_remotely_with_a_queue_enqueues_the_task_for_a_worker(tmp_path):
    proc = _register(tmp_path, queue="default")
    assert proc.returncode == 0, proc.stderr
    (task,) = Task.get_tasks(project_name="templates")
    assert task.status == "queued" and "enqueued on 'default'" in proc.stderr
    with Pool({"default": 1}):
        task.wait_for_status(timeout=60)
    assert task.artifacts["rows"].get() == [0, 1, 2]


def test_execute_remotely_on_a_queue_that_does_not_exist_says_how_to_serve_it(tmp_path):
    proc = _register(tmp_path, queue="gpu")
    assert proc.returncode != 0
    assert "there is no queue named 'gpu'" in proc.stderr and "labpipe agent --queue gpu" in proc.stderr


def test_clone_false_and_exit_process_false_is_refused():
    task = Task.init(project_name="templates", task_name="here", capture_output=False)
    try:
        with pytest.raises(ValueError, match="clone=True"):
            task.execute_remotely(clone=False, exit_process=False)
        copy = task.execute_remotely(clone=True, exit_process=False)
        assert copy.id != task.id and copy.status == "created" and task.reload().status == "in_progress"
    finally:
        task.close()
