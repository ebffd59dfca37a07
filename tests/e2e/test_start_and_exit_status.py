"""What a pipeline script's process does: `start()` hands the run over (the code after it runs once,
on the controller's side, to its end), a failed run exits non-zero with its root cause, and a
`labpipe stop` is one line and exit status 130."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from processes import wait_until

from labpipe import Task

CONTROLLER = textwrap.dedent("""
    import sys, time
    from labpipe import PipelineController

    def square(x: int = 2):
        if x < 0:
            raise ValueError(f"negative x: {x}")
        return x * x

    pipe = PipelineController(name="handed-over", project="e2e", version="1")
    pipe.add_parameter("x", int(sys.argv[2]))
    # a step on services too: the controller holding a services worker must not wait for it forever
    pipe.add_function_step("square", square, function_kwargs={"x": "${pipeline.x}"}, function_return=["y"],
                           execution_queue="services", monitor_artifacts=[("y", "result")])
    ok = pipe.START
    time.sleep(1.0)  # the run has ended by now: this must not be cut off
    with open(sys.argv[1], "a") as fh:
        fh.write(f"after start {ok}\\n")
    print("ran after start")
""")


def _run(tmp_path, text: str, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(text)
    return subprocess.run([sys.executable, str(script), *args], env={**os.environ, "LABPIPE_PROGRESS": "0", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def test_start_without_an_agent_runs_the_code_after_it_once_on_the_controller_side_and_exits_0(tmp_path, store):
    after = tmp_path / "after.txt"
    proc = _run(tmp_path, CONTROLLER.replace("pipe.START", 'pipe.start(queue="services")'), str(after), "3")
    assert proc.returncode == 0, proc.stderr
    assert after.read_text() == "after start True\n"  # once, whole (not cut off by the run's end)
    assert "ran after start" in proc.stdout  # the run's console, shown by the waiting caller
    (run,) = [t for t in Task.get_tasks(project_name="e2e") if t.task_type == "controller"]
    assert run.get_status() == "completed" and run.artifacts["result"].get() == 9
    assert "its process was ended" not in run.get_console() and "were not used" not in run.get_console()


def test_the_caller_of_start_shows_the_runs_progress_once_and_its_scripts_own_output(tmp_path, store):
    """The waiting caller draws the run's progress itself (from the store) and copies what the script
    prints; the controller records its progress lines apart (console stream 'progress'), so they are
    neither lost nor shown twice."""
    after = tmp_path / "after.txt"
    proc = _run(tmp_path, CONTROLLER.replace("pipe.START", 'pipe.start(queue="services")'), str(after), "3",
                env={"LABPIPE_PROGRESS": "plain"})
    assert proc.returncode == 0, proc.stderr
    assert len(re.findall(r"^square\s+done in", proc.stderr, re.M)) == 1, proc.stderr
    assert len(re.findall(r"^pipeline 'handed-over' completed in", proc.stderr, re.M)) == 1, proc.stderr
    assert "ran after start" in proc.stdout
    (run,) = [t for t in Task.get_tasks(project_name="e2e") if t.task_type == "controller"]
    from labpipe.store import outputs

    rows = outputs.read_console(run.db, run.id)
    assert any(r["stream"] == "progress" and re.search(r"^square\s+done in", r["text"], re.M) for r in rows)
    assert not any(r["stream"] != "progress" and "done in" in r["text"] for r in rows)


def test_start_locally_of_a_failing_run_exits_non_zero_with_the_root_cause(tmp_path, store):
    after = tmp_path / "after.txt"
    proc = _run(tmp_path, CONTROLLER.replace("pipe.START", "pipe.start_locally()"), str(after), "-1")
    assert proc.returncode == 1
    assert "StepFailed" in proc.stderr and "step 'square'" in proc.stderr and "ValueError: negative x: -1" in proc.stderr
    assert not after.exists()


def test_start_locally_of_a_good_run_goes_on_after_it(tmp_path, store):
    after = tmp_path / "after.txt"
    proc = _run(tmp_path, CONTROLLER.replace("pipe.START", "pipe.start_locally()"), str(after), "3")
    assert proc.returncode == 0, proc.stderr
    assert after.read_text() == "after start True\n"


DECORATED = textwrap.dedent("""
    import sys
    from labpipe import PipelineDecorator

    @PipelineDecorator.component(return_values=["y"])
    def breaks(x: int = 1):
        raise RuntimeError(f"broken on {x}")

    @PipelineDecorator.pipeline(name="decorated-failure", project="e2e", version="1")
    def main(x: int = 4):
        return breaks(x) + 1

    PipelineDecorator.run_locally(workers=1)
    main()
    open(sys.argv[1], "a").write("after\\n")
""")


def test_a_failing_decorated_pipeline_call_exits_non_zero_with_the_root_cause(tmp_path, store):
    after = tmp_path / "after.txt"
    proc = _run(tmp_path, DECORATED, str(after))
    assert proc.returncode == 1
    assert "step 'breaks'" in proc.stderr and "RuntimeError: broken on 4" in proc.stderr
    assert not after.exists()


STOPPABLE_CONTROLLER = textwrap.dedent("""
    from labpipe import PipelineController

    def slow(seconds: float = 60):
        import time
        time.sleep(seconds)
        return 1

    pipe = PipelineController(name="stoppable", project="e2e", version="1")
    pipe.add_function_step("slow", slow, function_return=["y"])
    pipe.start_locally(run_pipeline_steps_locally=True)
    print("after")
""")

STOPPABLE_DECORATED = textwrap.dedent("""
    from labpipe import PipelineDecorator

    @PipelineDecorator.component(return_values=["value"])
    def slow(seconds: float = 60):
        import time
        time.sleep(seconds)
        return seconds

    @PipelineDecorator.pipeline(name="stoppable", project="e2e", version="1")
    def main():
        return slow() + 1

    PipelineDecorator.run_locally(workers=1)
    main()
    print("after")
""")


@pytest.mark.parametrize("text", [STOPPABLE_CONTROLLER, STOPPABLE_DECORATED], ids=["controller", "decorator"])
def test_labpipe_stop_is_one_line_and_exit_status_130_in_the_running_script(tmp_path, store, text):
    script = tmp_path / "script.py"
    script.write_text(text)
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "LABPIPE_PROGRESS": "0"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (store / "labpipe.db").exists()
                   and Task.get_tasks(task_filter={"status": ["in_progress"], "type": ["training"]}), timeout=60, step=0.1)
        (run,) = Task.get_tasks(task_filter={"type": ["controller"]})
        stop = subprocess.run([sys.executable, "-m", "labpipe.cli", "stop", run.id], capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["labpipe: pipeline stopped by `labpipe stop`"]
    assert "after" not in out
