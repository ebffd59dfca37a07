"""The services queue in services mode, and start() as in ClearML: the caller leaves, the code after
start() runs once on the controller's side, and the exit status tells how the run ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from processes import wait_until

from labpipe import Task
from labpipe.store import leases
from labpipe.store.db import get_database

PIPELINE = textwrap.dedent("""
    import sys
    from labpipe import PipelineController

    def square(x: int = 2):
        return x * x

    def explode():
        raise ValueError("the step blew up")

    pipe = PipelineController(name="svc", project="svc", version="1")
    pipe.add_parameter("x", 3)
    pipe.add_function_step("square", square, function_kwargs={"x": "${pipeline.x}"}, function_return=["y"],
                           execution_queue=sys.argv[1])
    if sys.argv[2] == "fail":
        pipe.add_function_step("explode", explode, execution_queue=sys.argv[1])
    pipe.start(queue="services")
    with open(sys.argv[3], "a") as f:  # the code after start(): must run exactly once
        f.write(f"after start in {'worker' if not Task.running_locally() else 'caller'}\\n")
    print("AFTER START")
""").replace("import sys\n", "import sys\nfrom labpipe import Task\n", 1)


def _run(tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "svc_pipeline.py"
    script.write_text(PIPELINE)
    return subprocess.run([sys.executable, str(script), *args], env=dict(os.environ), capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


def test_a_controller_whose_step_is_on_services_too_completes_on_the_built_in_pool(tmp_path, store):
    marks = tmp_path / "after.txt"
    done = _run(tmp_path, "services", "ok", str(marks))
    assert done.returncode == 0, done.stderr
    assert marks.read_text() == "after start in worker\n"  # once, on the controller's side
    assert "AFTER START" in done.stdout  # its output reaches the caller
    [run] = [t for t in Task.get_tasks(project_name="svc") if t.task_type == "controller"]
    [step] = [t for t in Task.get_tasks(project_name="svc") if t.name == "square"]
    assert run.get_status() == "completed" and step.artifacts["y"].get() == 9


def test_a_failed_run_makes_the_caller_exit_1_with_the_root_cause(tmp_path, store):
    marks = tmp_path / "after.txt"
    done = _run(tmp_path, "default", "fail", str(marks))
    assert done.returncode == 1
    assert "the step blew up" in done.stderr and "'explode'" in done.stderr
    assert marks.read_text() == "after start in worker\n"  # start() returned False there; the code went on once


def test_with_an_agent_serving_services_the_caller_enqueues_and_leaves_at_once(tmp_path, store):
    agent = subprocess.Popen([sys.executable, "-m", "labpipe.agent", "--services", "--queue", "default",
                              "--workers", "1"], stderr=subprocess.DEVNULL)
    try:
        db = get_database()
        wait_until(lambda: any("services" in w["queues"] for w in leases.live_workers(db, 10)))
        marks = tmp_path / "after.txt"
        done = _run(tmp_path, "default", "ok", str(marks))
        assert done.returncode == 0, done.stderr
        [run] = [t for t in Task.get_tasks(project_name="svc") if t.task_type == "controller"]
        assert run.id in done.stderr and f"labpipe show {run.id}" in done.stderr  # how to follow it
        wait_until(lambda: marks.exists() and marks.read_text() == "after start in worker\n", timeout=60)
        assert run.reload().get_status() == "completed"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)


def test_at_max_services_a_step_that_can_never_start_is_reported(tmp_path, store, monkeypatch):
    monkeypatch.setenv("LABPIPE_BOUND_WARNING_AFTER", "0.5")
    agent = subprocess.Popen([sys.executable, "-m", "labpipe.agent", "--services", "--max-services", "1"],
                             stderr=subprocess.PIPE, text=True)
    script = tmp_path / "svc_pipeline.py"
    script.write_text(PIPELINE)
    caller = None
    try:
        db = get_database()
        wait_until(lambda: any("services" in w["queues"] for w in leases.live_workers(db, 10)))
        caller = subprocess.run([sys.executable, str(script), "services", "ok", str(tmp_path / "m.txt")],
                                env=dict(os.environ), capture_output=True, text=True, timeout=60, cwd=tmp_path)
        [run] = [t for t in Task.get_tasks(project_name="svc") if t.task_type == "controller"]

        def warned() -> bool:
            return "--max-services 1" in run.get_console()

        wait_until(warned, timeout=30)
        console = run.get_console()
        assert "'square'" in console and "queue 'services'" in console
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        assert caller is None or caller.returncode == 0


STOPPABLE = textwrap.dedent("""
    import time
    from labpipe import PipelineController

    def nap(seconds: float = 30.0):
        import time
        time.sleep(seconds)

    pipe = PipelineController(name="stoppable", project="svc", version="1")
    pipe.add_function_step("nap", nap)
    pipe.start_locally(run_pipeline_steps_locally=True)
    print("NOT REACHED")
""")


def test_labpipe_stop_seen_from_the_script_is_one_line_and_exit_130(tmp_path, store):
    script = tmp_path / "stoppable.py"
    script.write_text(STOPPABLE)
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        def running() -> bool:
            return any(t.name == "nap" and t.get_status() == "in_progress" for t in Task.get_tasks(project_name="svc"))

        wait_until(running, timeout=60)
        [run] = [t for t in Task.get_tasks(project_name="svc") if t.task_type == "controller"]
        subprocess.run([sys.executable, "-m", "labpipe.cli", "stop", run.id], check=True, capture_output=True, timeout=60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "NOT REACHED" not in out and "Traceback" not in err
    assert "pipeline stopped by `labpipe stop`" in err
