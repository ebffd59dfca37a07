"""PipelineController.start(): the controller runs as a task on `services`, the caller waits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from labpipe import Task

SCRIPT = textwrap.dedent("""
    import sys
    from labpipe import PipelineController

    def square(x: int = 2):
        return x * x

    pipe = PipelineController(name="remote-controller", project="e2e", version="1")
    pipe.add_parameter("x", 3)
    pipe.add_function_step("square", square, function_kwargs={"x": "${pipeline.x}"}, function_return=["y"],
                           monitor_artifacts=[("y", "result")])
    ok = pipe.start(queue="services")
    print("ok", ok)
    sys.exit(0 if ok else 1)
""")


def test_start_runs_the_controller_on_a_services_worker(tmp_path, store):
    script = tmp_path / "remote_controller.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok True" in proc.stdout
    (run,) = [t for t in Task.get_tasks(project_name="e2e") if t.task_type == "controller"]
    assert run.get_status() == "completed" and run.data.worker.startswith("pool:")
    assert run.artifacts["result"].get() == 9


def test_reporting_before_start_lands_on_the_run_even_when_a_worker_runs_the_script(tmp_path, store):
    script = tmp_path / "remote_controller.py"
    edited = SCRIPT.replace('ok = pipe.start(queue="services")', '''pipe.upload_artifact("config", {"x": 3})
pipe.get_logger().report_text("configured")
ok = pipe.start(queue="services")''')
    assert edited != SCRIPT
    script.write_text(edited)
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (run,) = [t for t in Task.get_tasks(project_name="e2e") if t.task_type == "controller"]  # no second run
    assert run.get_status() == "completed" and run.artifacts["config"].get() == {"x": 3}
    assert run.artifacts["result"].get() == 9
