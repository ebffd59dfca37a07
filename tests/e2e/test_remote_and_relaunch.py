"""Remote mode and clone-and-relaunch: the controller runs as a task on `services`; a clone with
edited Args really runs with them, reusing cached steps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from labpipe import Task
from labpipe.agent.pool import Pool
from labpipe.store import pipelines
from labpipe.store.db import get_database

SCRIPT = textwrap.dedent("""
    import sys
    from labpipe import PipelineDecorator

    @PipelineDecorator.component(return_values=["numbers"], cache=True)
    def make_numbers(n: int = 3):
        return list(range(n))

    @PipelineDecorator.component(return_values=["total"], cache=True)
    def add_up(numbers, bonus: int = 0):
        return sum(numbers) + bonus

    @PipelineDecorator.pipeline(name="remote-chain", project="e2e", version="2.0", return_value="total")
    def main(n=4, bonus=1):
        total = add_up(make_numbers(n), bonus=bonus)
        print("total is", total)
        return total

    if __name__ == "__main__":
        print("result", main())
""")


def _pipeline_runs():
    return [t for t in Task.get_tasks(project_name="e2e") if t.task_type == "controller"]


def test_remote_mode_runs_the_controller_on_services_and_a_clone_reruns_with_new_args(tmp_path, store):
    script = tmp_path / "remote_chain.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "result 7" in proc.stdout
    (run,) = _pipeline_runs()
    assert run.get_status() == "completed" and run.data.worker and run.data.worker.startswith("pool:")
    assert "total is 7" in run.get_console()  # the logic ran on the services worker
    assert run.artifacts["total"].get() == 7

    clone = Task.clone(run, name="relaunched")
    clone.set_parameter("Args/bonus", 10)
    Task.enqueue(clone, queue_name="services")
    with Pool(queues={"services": 1}):
        clone.wait_for_status(timeout=120)
    assert clone.get_status() == "completed"
    assert clone.artifacts["total"].get() == 16  # 0+1+2+3 + the edited bonus
    for task in (run, clone):  # no false message: its parameters were used, its process ended by itself
        console = task.reload().get_console()
        assert "its parameters were not used" not in console and "its process was ended" not in console, console
    nodes = {n["name"]: n for n in pipelines.load_nodes(get_database(), clone.id)}
    assert nodes["make_numbers"]["status"] == "cached" and nodes["add_up"]["status"] == "completed"


def test_cli_clone_set_and_enqueue_relaunches_a_pipeline(tmp_path, store):
    script = tmp_path / "remote_chain.py"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script)], env=dict(os.environ), check=True, capture_output=True, timeout=120)
    (run,) = _pipeline_runs()
    out = subprocess.run(["labpipe", "clone", run.id, "--set", "Args/n=5", "--enqueue", "services", "--json"],
                         env=dict(os.environ), check=True, capture_output=True, text=True, timeout=60).stdout
    import json

    clone = Task.get_task(task_id=json.loads(out)["id"])
    with Pool(queues={"services": 1}):
        clone.wait_for_status(timeout=120)
    assert clone.artifacts["total"].get() == 11  # 0+1+2+3+4 + bonus 1


def test_a_refresh_asked_by_the_caller_reaches_a_controller_run_by_a_daemon(tmp_path, store):
    import signal

    from processes import wait_until

    from labpipe.store import leases as store_leases

    script = tmp_path / "remote_chain.py"
    script.write_text(SCRIPT)
    clean_env = {k: v for k, v in os.environ.items() if k != "LABPIPE_REFRESH"}
    first = subprocess.run([sys.executable, str(script)], env=clean_env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    # a daemon serves `services` with its own environment, where LABPIPE_REFRESH is not set
    daemon = subprocess.Popen([sys.executable, "-m", "labpipe.agent", "--queue", "services", "--workers", "1"],
                              env=clean_env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(w["kind"] == "daemon" for w in store_leases.live_workers(get_database(), 10)))
        again = subprocess.run([sys.executable, str(script)], env=dict(clean_env, LABPIPE_REFRESH="all"),
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    newest = max(_pipeline_runs(), key=lambda t: t.data.created)
    assert newest.data.worker.startswith("daemon:")  # the daemon ran this controller
    nodes = pipelines.load_nodes(get_database(), newest.id)
    assert [n["status"] for n in nodes] == ["completed", "completed"]  # refreshed, not "cached"


def test_a_clone_whose_pipeline_function_was_renamed_fails_saying_so(tmp_path, store):
    script = tmp_path / "remote_chain.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (run,) = _pipeline_runs()
    script.write_text(SCRIPT.replace("def main(", "def renamed_main(").replace("main()", "renamed_main()"))
    clone = Task.clone(run, name="relaunched")
    clone.set_parameter("Args/bonus", 10)
    Task.enqueue(clone, queue_name="services")
    with Pool(queues={"services": 1}):
        clone.wait_for_status(status=["completed", "failed", "stopped"], timeout=120, raise_on_status=())
    assert clone.get_status() == "failed"
    assert "without running pipeline 'main'" in clone.get_status_message()
