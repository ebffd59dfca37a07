"""Services mode (`labpipe agent --services`, the built-in pool): several services tasks at once, up
to --max-services, and a clear word when a task waiting there can never start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from processes import wait_until

from labpipe import Task
from labpipe.agent import Pool
from labpipe.store import leases as store_leases
from labpipe.store.db import get_database
from labpipe.waiting import wait_for_tasks

WAIT = 60


def waits_for(release):
    """Run until the file `release` exists: a services task that holds its worker as long as a test wants."""
    import os
    import time

    while not os.path.exists(release):
        time.sleep(0.02)
    return "released"


@pytest.fixture
def start_agent():
    """Start `labpipe agent` processes; each is waited for (registered) and killed at the end if still alive."""
    procs = []

    def start(*args: str, env: dict | None = None) -> subprocess.Popen:
        db = get_database()
        before = len([w for w in store_leases.live_workers(db, 10) if w["kind"] == "daemon"])
        proc = subprocess.Popen([sys.executable, "-m", "labpipe.agent", *args], stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
        procs.append(proc)
        wait_until(lambda: len([w for w in store_leases.live_workers(db, 10) if w["kind"] == "daemon"]) > before, timeout=WAIT)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _services_workers(db) -> list[dict]:
    return [w for w in store_leases.live_workers(db, 10) if "services" in w["queues"]]


def test_the_pool_runs_services_tasks_at_once_up_to_its_bound(tmp_path):
    release = tmp_path / "release"
    db = get_database()
    with Pool({"services": 1}, max_services=2) as pool:
        held = [Task.enqueue(Task.create_function_task(waits_for, release=str(release)), queue_name="services") for _ in range(3)]
        wait_until(lambda: len(Task.get_tasks(task_filter={"status": ["in_progress"]})) == 2, timeout=WAIT)
        assert pool.queues == {"services": 2} and len(_services_workers(db)) == 2
        assert sorted(t.reload().status for t in held) == ["in_progress", "in_progress", "queued"]  # the bound holds
        release.touch()
        wait_for_tasks(held, timeout=WAIT)
        assert [t.artifacts["return_object"].get() for t in held] == ["released"] * 3
        assert pool.queues == {"services": 2}


CONTROLLER = textwrap.dedent("""
    import sys
    from labpipe import PipelineController

    def square(x: int = 2):
        return x * x

    pipe = PipelineController(name="services-steps", project="svc", version="1")
    pipe.add_function_step("square", square, function_kwargs={"x": 7}, function_return=["y"], execution_queue="services",
                           monitor_artifacts=[("y", "result")])
    pipe.start(queue="services")
    with open(sys.argv[1], "a") as fh:
        fh.write("after start\\n")
""")


def _controller(tmp_path) -> tuple[str, str]:
    script = tmp_path / "services_controller.py"
    script.write_text(CONTROLLER)
    return str(script), str(tmp_path / "after.txt")


def _the_run() -> Task:
    (run,) = [t for t in Task.get_tasks(project_name="svc") if t.task_type == "controller"]
    return run


def test_an_agent_runs_a_controller_and_the_step_it_puts_on_services_and_start_hands_over(tmp_path, start_agent):
    start_agent("--services")
    script, after = _controller(tmp_path)
    proc = subprocess.run([sys.executable, script, after], env=dict(os.environ), capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 0, proc.stderr
    run = _the_run()
    assert run.id in proc.stderr and f"labpipe show {run.id}" in proc.stderr  # the id, and how to follow it
    wait_for_tasks([run], timeout=WAIT)
    assert run.artifacts["result"].get() == 49 and run.data.worker.startswith("daemon:")
    wait_until(lambda: os.path.exists(after), timeout=WAIT)
    wait_until(lambda: (run.reload().data.runtime.get("script_exit") or {}).get("code") == 0, timeout=WAIT)
    assert open(after).read() == "after start\n"  # on the agent, once; the caller left at start()


def test_at_the_bound_an_agent_says_which_step_can_never_start(tmp_path, start_agent):
    agent = start_agent("--services", "--max-services", "1", env={"LABPIPE_BOUND_WARNING_AFTER": "0.2"})
    script, after = _controller(tmp_path)
    proc = subprocess.run([sys.executable, script, after], env=dict(os.environ), capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 0, proc.stderr
    run = _the_run()
    console = wait_until(lambda: "--max-services 1" in run.get_console() and run.get_console(), timeout=WAIT)
    assert "step 'square'" in console and "queue 'services'" in console and "services-steps" in console
    subprocess.run([sys.executable, "-m", "labpipe.cli", "stop", run.id], check=True, capture_output=True, timeout=WAIT)
    agent.terminate()
    assert agent.wait(30) == 0
    assert "step 'square'" in agent.stderr.read()  # the agent's log says it too
