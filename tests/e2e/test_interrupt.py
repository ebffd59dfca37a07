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
    script = tmp_path / "interruptible.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    step = None
    while time.time() < deadline:
        running = Task.get_tasks(task_filter={"status": ["in_progress"], "type": ["training"]}) if (store / "labpipe.db").exists() else []
        if running:
            step = running[0]
            break
        time.sleep(0.1)
    assert step is not None, "the step never started"
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode != 0
    pipe = Task.get_tasks(task_filter={"type": ["controller"]})[0]
    assert pipe.get_status() == "stopped"
    assert step.get_status() == "stopped"
    conn = sqlite3.connect(store / "labpipe.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM tasks WHERE status IN ('queued', 'in_progress')").fetchone()[0] == 0
