"""Ctrl-C in the calling script: running steps stop, the pipeline is marked stopped, the store stays consistent."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from labpipe import Task

SCRIPT = textwrap.dedent("""
    from labpipe import PipelineDecorator

    @PipelineDecorator.component(return_values=["value"])
    def long_step(seconds: float = 60):
        import time
        time.sleep(seconds)
        return seconds

    @PipelineDecorator.pipeline(name="interruptible", project="e2e", version="1")
    def main():
        return long_step() + 1

    if __name__ == "__main__":
        PipelineDecorator.run_locally(workers=1)
        main()
""")


def test_ctrl_c_stops_running_steps_and_marks_the_pipeline_stopped(tmp_path, store):
    proc, step = _start(tmp_path, store, SCRIPT)
    proc.send_signal(signal.SIGINT)
    _finish(proc)
    assert proc.returncode != 0
    pipe = Task.get_tasks(task_filter={"type": ["controller"]})[0]
    assert pipe.get_status() == "stopped"
    assert step.get_status() == "stopped"
    _assert_nothing_left(store, step)


TWO_STEPS = textwrap.dedent("""
    from labpipe import PipelineDecorator

    @PipelineDecorator.component(return_values=["value"])
    def long_step(seconds: float = 60):
        import time
        time.sleep(seconds)
        return seconds

    @PipelineDecorator.component(return_values=["value"])
    def after(x):
        return x + 1

    @PipelineDecorator.pipeline(name="stoppable", project="e2e", version="1")
    def main():
        return after(long_step())

    if __name__ == "__main__":
        PipelineDecorator.run_locally(workers=1)
        main()
""")


def _start(tmp_path, store, text=TWO_STEPS):
    """Run a pipeline script in a process of its own; returns (process, its running long_step task)."""
    script = tmp_path / "pipeline_script.py"
    script.write_text(text)
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline:
        running = Task.get_tasks(task_filter={"status": ["in_progress"], "type": ["training"]}) if (store / "labpipe.db").exists() else []
        if running:
            return proc, running[0]
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the step never started")


def _finish(proc, timeout=30):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def _assert_nothing_left(store, step):
    from processes import alive

    pid = step.reload().data.runtime.get("pid")
    assert pid is None or not alive(pid)
    conn = sqlite3.connect(store / "labpipe.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM tasks WHERE status IN ('queued', 'in_progress')").fetchone()[0] == 0


def test_sigterm_ends_the_pipeline_as_ctrl_c_does(tmp_path, store):
    proc, step = _start(tmp_path, store)
    proc.send_signal(signal.SIGTERM)
    _finish(proc)
    assert proc.returncode != 0
    pipe = Task.get_tasks(task_filter={"type": ["controller"]})[0]
    assert pipe.get_status() == "stopped" and step.get_status() == "stopped"
    assert [t.name for t in Task.get_tasks(task_name="after")] == []  # never launched
    _assert_nothing_left(store, step)


def test_labpipe_stop_on_a_local_pipeline_stops_its_steps_and_it_stays_stopped(tmp_path, store):
    from click.testing import CliRunner

    from labpipe.agent.commands import stop_command

    proc, step = _start(tmp_path, store)
    pipe = Task.get_tasks(task_filter={"type": ["controller"]})[0]
    result = CliRunner().invoke(stop_command, [pipe.id])
    assert result.exit_code == 0 and "1 of its steps stopped too" in result.output
    _, err = _finish(proc)
    assert proc.returncode != 0  # the logic used a step that was stopped
    assert pipe.get_status() == "stopped", err  # not overwritten by the run's own ending
    assert step.get_status() == "stopped"
    assert [t.name for t in Task.get_tasks(task_name="after")] == []
    _assert_nothing_left(store, step)


def test_a_killed_controller_is_failed_by_the_next_look_and_its_steps_never_rerun(tmp_path, store):
    from labpipe.agent import Pool
    from labpipe.store import leases as store_leases
    from labpipe.store.db import get_database

    proc, step = _start(tmp_path, store)
    proc.kill()  # SIGKILL: nothing in the process can react; its pool's workers end with it
    _finish(proc)
    pipe = Task.get_tasks(task_filter={"type": ["controller"]})[0]
    store_leases.reap_expired(get_database())  # what any worker, pool or waiting process does
    assert pipe.get_status() == "failed" and "ended without finishing it" in pipe.get_status_message()
    with Pool({"default": 1}):  # the next pool on this store must not run the dead run's step
        deadline = time.time() + 20
        while step.get_status() in ("queued", "in_progress") and time.time() < deadline:
            time.sleep(0.1)
    assert step.get_status() == "stopped" and "its pipeline" in step.get_status_message()
    _assert_nothing_left(store, step)
