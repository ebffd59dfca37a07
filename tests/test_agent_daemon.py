"""`labpipe agent` daemons and the `workers` / `stop` commands, on real processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections import Counter

import pytest
from click.testing import CliRunner
from processes import alive, sleeper, wait_until

from labpipe import Task
from labpipe.agent.commands import stop_command, workers_command
from labpipe.store import leases as store_leases
from labpipe.store.db import get_database
from labpipe.waiting import wait_for_tasks

WAIT = 20



def logs_once(log_file, tag):
    import os
    import time

    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{tag}\n".encode())
    os.close(fd)
    time.sleep(0.02)
    return tag


def imports_colorsys_at_run_time():
    import importlib
    import sys

    already = "colorsys" in sys.modules  # its source names no import: only a pre-warmed worker has it
    importlib.import_module("colorsys")
    return already


@pytest.fixture
def start_daemon():
    """Start `labpipe agent` daemons; each is waited for (registered) and killed at the end if still alive."""
    procs = []

    def start(*args: str) -> subprocess.Popen:
        db = get_database()
        before = len([w for w in store_leases.live_workers(db, 10) if w["kind"] == "daemon"])
        proc = subprocess.Popen([sys.executable, "-m", "labpipe.agent", *args], stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        wait_until(lambda: len([w for w in store_leases.live_workers(db, 10) if w["kind"] == "daemon"]) > before)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_sigterm_lets_the_running_task_finish_then_exits_cleanly(start_daemon, tmp_path):
    daemon = start_daemon("--queue", "q", "--workers", "1", "--grace", "10")
    task = Task.create_function_task(sleeper, pid_file=str(tmp_path / "pid"), seconds=1.0)
    Task.enqueue(task, queue_name="q")
    wait_until(lambda: (tmp_path / "pid").exists())
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert task.get_status() == "completed"
    assert "stopped" in daemon.stderr.read()
    assert store_leases.live_workers(get_database(), 10) == []


def test_sigterm_requeues_a_task_that_outlasts_the_grace_period(start_daemon, tmp_path):
    daemon = start_daemon("--queue", "q", "--workers", "1", "--grace", "0.3")
    pid_file = tmp_path / "pid"
    task = Task.create_function_task(sleeper, pid_file=str(pid_file))
    Task.enqueue(task, queue_name="q")
    child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert not alive(child)
    assert task.get_status() == "queued"


def test_two_daemons_share_work_without_running_any_task_twice(start_daemon, tmp_path):
    start_daemon("--queue", "shared", "--workers", "1")
    start_daemon("--queue", "shared", "--workers", "1")
    log = tmp_path / "runs.log"
    tasks = [Task.create_function_task(logs_once, log_file=str(log), tag=f"t{i}") for i in range(30)]
    for t in tasks:
        Task.enqueue(t, queue_name="shared")
    wait_for_tasks(tasks, timeout=WAIT)
    runs = Counter(log.read_text().split())
    assert runs == Counter({f"t{i}": 1 for i in range(30)})
    assert len({t.data.runtime["worker"] for t in tasks}) == 2  # both daemons took part


def test_workers_command_lists_live_workers_and_what_they_run(start_daemon, tmp_path):
    start_daemon("--queue", "q", "--queue", "gpu", "--workers", "1")
    task = Task.create_function_task(sleeper, pid_file=str(tmp_path / "pid"))
    Task.enqueue(task, queue_name="q")
    wait_until(lambda: (tmp_path / "pid").exists())
    result = CliRunner().invoke(workers_command, ["--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["kind"] == "daemon" and row["queues"] == ["q", "gpu"] and row["task"] == task.id
    table = CliRunner().invoke(workers_command, []).output.splitlines()
    assert table[0].split() == ["worker", "kind", "pid", "queues", "task", "running", "for", "seen"]  # one table style
    assert table[1][table[0].index("kind"):].startswith("daemon  ")
    task.mark_stopped()


def test_stop_command_ends_a_running_task(start_daemon, tmp_path):
    start_daemon("--queue", "q", "--workers", "1")
    pid_file = tmp_path / "pid"
    task = Task.create_function_task(sleeper, pid_file=str(pid_file))
    Task.enqueue(task, queue_name="q")
    child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    result = CliRunner().invoke(stop_command, [task.id])
    assert result.exit_code == 0 and "was in_progress" in result.output
    wait_until(lambda: not alive(child), timeout=1.5)
    assert task.get_status() == "stopped"


def test_stop_command_refuses_a_finished_task_naming_it():
    task = Task.create(task_name="done")
    task.mark_completed(force=True)
    result = CliRunner().invoke(stop_command, [task.id])
    assert result.exit_code == 1
    assert task.id in result.output and "completed" in result.output


def test_a_starting_daemon_imports_what_its_queues_recent_tasks_imported(start_daemon):
    first_daemon = start_daemon("--queue", "warmq", "--workers", "1")
    first = Task.create_function_task(imports_colorsys_at_run_time)
    Task.enqueue(first, queue_name="warmq")
    wait_for_tasks([first], timeout=WAIT)
    assert first.reload().status == "completed"
    assert first.artifacts["return_object"].get() is False  # a fresh daemon had not imported it
    first_daemon.send_signal(signal.SIGTERM)
    assert first_daemon.wait(WAIT) == 0
    start_daemon("--queue", "warmq", "--workers", "1")
    second = Task.create_function_task(imports_colorsys_at_run_time)
    Task.enqueue(second, queue_name="warmq")
    wait_for_tasks([second], timeout=WAIT)
    assert second.artifacts["return_object"].get() is True  # the new daemon imported it at start


def test_listings_never_show_a_killed_workers_task_as_running(tmp_path, store):
    """No pool, no waiter: the worker holding the task is killed with a 60 s lease left; `labpipe
    tasks`, `show` and `workers` release it before they show anything."""
    from labpipe.cli import main

    code = f"from labpipe.agent.worker import Worker, WorkerConfig; Worker(WorkerConfig({str(store)!r}, ('q',), lease_seconds=60)).serve()"
    worker = subprocess.Popen([sys.executable, "-c", code])
    try:
        pid_file = tmp_path / "pid"
        task = Task.create_function_task(sleeper, pid_file=str(pid_file))
        Task.enqueue(task, queue_name="q")
        wait_until(lambda: pid_file.exists())
        worker.kill()
        worker.wait(5)
        assert task.get_status() == "in_progress"  # a plain read changes nothing
        listed = CliRunner().invoke(main, ["tasks", "--json"])
        assert listed.exit_code == 0, listed.output
        (row,) = json.loads(listed.output)
        assert row["status"] == "failed"
        shown = CliRunner().invoke(main, ["show", task.id, "--json"])
        assert "worker lost" in json.loads(shown.output)["status_message"]
        assert json.loads(CliRunner().invoke(workers_command, ["--json"]).output) == []
    finally:
        worker.kill()
        worker.wait(5)


def test_an_agent_whose_store_goes_bad_exits_1_saying_it_cannot_serve(start_daemon, store):
    import os

    daemon = start_daemon("--queue", "q", "--workers", "1")
    (worker,) = store_leases.live_workers(get_database(), 10)
    (store / "labpipe.db").write_bytes(b"no longer a database" * 100)
    for suffix in ("-wal", "-shm"):
        (store / f"labpipe.db{suffix}").unlink(missing_ok=True)
    os.kill(worker["pid"], signal.SIGKILL)  # its replacement cannot open the store
    assert daemon.wait(WAIT) == 1
    last = daemon.stderr.read().strip().splitlines()[-1]
    assert "labpipe agent[" in last and "ERROR: stopped: cannot serve:" in last and "not a labpipe store database" in last


def test_python_dash_m_labpipe_agent_is_the_agent_command_and_the_old_module_still_runs_it():
    """agent/__main__.py is the daemon's entry point (`labpipe agent`'s options); `labpipe.agent.daemon`,
    the entry point before it, still runs the same command."""
    from labpipe.cli import main as cli

    def options(text: str) -> set[str]:
        return set(re.findall(r"--[a-z][a-z-]*", text.split("Options:")[1]))

    runner = CliRunner()
    listed = runner.invoke(cli, ["agent", "--help"])
    assert listed.exit_code == 0, listed.output
    for module in ("labpipe.agent", "labpipe.agent.daemon"):
        shown = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "Usage: python -m labpipe.agent [OPTIONS]" in shown.stdout
        assert options(shown.stdout) == options(listed.output) >= {"--queue", "--services", "--workers", "--grace", "--lease"}
    bad = subprocess.run([sys.executable, "-m", "labpipe.agent", "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--workers" in bad.stderr
