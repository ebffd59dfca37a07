"""The built-in pool: worker life cycle, no orphans, lost workers, daemon-served queues, ensure_pool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from processes import alive, sleeper, wait_until

from labpipe import StepFailed, Task
from labpipe.agent import Pool, ensure_pool
from labpipe.agent import pool as pool_module
from labpipe.store import leases as store_leases
from labpipe.store.db import get_database
from labpipe.waiting import wait_for_tasks

WAIT = 20



def resumable(pid_file, marker):
    import os
    import time

    if os.path.exists(marker):
        return "second run"
    open(marker, "w").close()
    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(30)


def add(a, b=1):
    return a + b


def controller_step():
    """Like a pipeline controller on the services queue: starts its own pool and runs a step on it."""
    import os

    from labpipe import Task
    from labpipe.agent import ensure_pool

    def double(x):
        return 2 * x

    pool = ensure_pool({"default": 1})
    step = Task.enqueue(Task.create_function_task(double, x=21))
    step.wait_for_status(timeout=20)
    return step.artifacts["return_object"].get(), pool.pids, os.getpid()


def started_child(pid_file) -> int:
    return int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))


@pytest.fixture(params=["fork", "fresh"])
def start_method(request, monkeypatch):
    """Run the test with pool workers forked from this process, then started as fresh interpreters."""
    monkeypatch.setenv("LABPIPE_WORKER_START", request.param)
    return request.param


def test_pool_stop_ends_workers_and_running_tasks_and_requeues_them(tmp_path, start_method):
    pool = Pool({"default": 2}, grace=0.2).start()
    workers = pool.pids
    assert len(workers) == 2
    pid_file = tmp_path / "pid"
    task = Task.create_function_task(sleeper, pid_file=str(pid_file))
    Task.enqueue(task)
    child = started_child(pid_file)
    pool.stop()
    assert not [pid for pid in [*workers, child] if alive(pid)]
    assert task.get_status() == "queued"
    assert "re-queued" in task.get_status_message()
    assert store_leases.live_workers(get_database(), 10) == []


def test_owner_killed_with_sigkill_leaves_no_orphan_processes(tmp_path, store, start_method):
    (tmp_path / "steps.py").write_text(textwrap.dedent('''
        def sleeper(pid_file):
            import os, time
            open(pid_file, "w").write(str(os.getpid()))
            time.sleep(30)
    '''))
    pid_file = tmp_path / "pid"
    owner_code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from labpipe import Task
        from labpipe.agent import Pool
        from steps import sleeper
        pool = Pool({{"default": 2}}).start()
        Task.enqueue(Task.create_function_task(sleeper, pid_file={str(pid_file)!r}))
        print(" ".join(map(str, pool.pids)), flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in owner.stdout.readline().split()]
        child = started_child(pid_file)
        owner.kill()
        owner.wait(5)
        wait_until(lambda: not any(alive(p) for p in [*workers, child]), timeout=5)
    finally:
        owner.kill()
        owner.wait(5)
    (task,) = Task.get_tasks(task_name="sleeper")
    assert task.get_status() == "queued"  # re-queued by its worker on the way out, not lost


def test_killed_worker_is_replaced_and_its_task_failed_worker_lost_at_once(tmp_path):
    with Pool({"default": 1}) as pool:  # default 10 s lease: the pool notices the death itself
        pid_file = tmp_path / "pid"
        task = Task.create_function_task(sleeper, pid_file=str(pid_file))
        Task.enqueue(task)
        child = started_child(pid_file)
        worker = pool.pids[0]
        os.kill(worker, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(StepFailed, match="worker lost"):
            task.wait_for_status(timeout=WAIT)
        assert time.monotonic() - start < 3
        wait_until(lambda: not alive(child), timeout=3)
        replacement = wait_until(lambda: pool.pids and pool.pids[0] != worker and pool.pids[0])
        after = Task.create_function_task(add, a=1)
        Task.enqueue(after)
        after.wait_for_status(timeout=WAIT)
        assert after.data.runtime["worker"].endswith(f":{replacement}")


def test_killed_worker_task_with_retries_left_is_requeued_and_run_again(tmp_path):
    with Pool({"default": 1}) as pool:
        pid_file = tmp_path / "pid"
        task = Task.create_function_task(resumable, pid_file=str(pid_file), marker=str(tmp_path / "m"), retry_on_failure=1)
        Task.enqueue(task)
        started_child(pid_file)
        os.kill(pool.pids[0], signal.SIGKILL)
        task.wait_for_status(timeout=WAIT)
        assert task.artifacts["return_object"].get() == "second run"
        assert task.data.attempt == 2


def test_pool_leaves_a_queue_served_by_a_daemon_alone(store):
    daemon = subprocess.Popen([sys.executable, "-m", "labpipe.agent", "--queue", "shared", "--workers", "1"],
                              stderr=subprocess.DEVNULL)
    try:
        db = get_database()
        wait_until(lambda: [w for w in store_leases.live_workers(db, 10) if w["kind"] == "daemon"])
        with Pool({"shared": 1, "default": 1}) as pool:
            assert pool.skipped == ["shared"]
            assert pool.queues == {"default": 1}
            task = Task.create_function_task(add, a=1)
            Task.enqueue(task, queue_name="shared")
            task.wait_for_status(timeout=WAIT)
            assert task.data.runtime["worker"].startswith("daemon:")
    finally:
        daemon.terminate()
        assert daemon.wait(10) == 0


def test_ensure_pool_starts_one_pool_and_adds_queues_to_it():
    try:
        first = ensure_pool({"default": 1})
        again = ensure_pool(["default"])
        assert again is first and first.queues == {"default": 1}
        first_pids = set(first.pids)
        with_services = ensure_pool({"services": 1})
        assert with_services is first and first.queues == {"default": 1, "services": 1}
        assert first_pids < set(first.pids)
        task = Task.create_function_task(add, a=4)
        Task.enqueue(task, queue_name="services")
        task.wait_for_status(timeout=WAIT)
        assert task.artifacts["return_object"].get() == 5
    finally:
        if pool_module._shared is not None:
            pids = pool_module._shared.pids
            pool_module._shared.stop()
            assert not [p for p in pids if alive(p)]


def test_a_step_can_start_its_own_pool_and_it_is_stopped_when_the_step_ends():
    with Pool({"services": 1}):
        task = Task.create_function_task(controller_step)
        Task.enqueue(task, queue_name="services")
        task.wait_for_status(timeout=WAIT)
        value, inner_workers, step_pid = task.artifacts["return_object"].get()
        assert value == 42
        wait_until(lambda: not any(alive(p) for p in [*inner_workers, step_pid]), timeout=5)


def test_fresh_workers_are_new_interpreters_that_run_tasks(monkeypatch):
    monkeypatch.setenv("LABPIPE_WORKER_START", "fresh")
    with Pool({"default": 1}) as pool:
        (pid,) = pool.pids

        def cmdline() -> bytes:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return fh.read()

        wait_until(lambda: cmdline())  # empty until the new interpreter has been exec'd
        assert b"-m\x00labpipe.agent\x00worker\x00" in cmdline()  # started fresh, through agent/__main__.py
        task = Task.enqueue(Task.create_function_task(add, a=40, b=2))
        task.wait_for_status(timeout=WAIT)
        assert task.artifacts["return_object"].get() == 42
    assert not alive(pid)


def test_start_method_follows_the_owners_memory_unless_told(monkeypatch):
    from labpipe.agent import spawned

    monkeypatch.delenv("LABPIPE_WORKER_START", raising=False)
    assert spawned.private_memory_mb() > 1  # this interpreter has written some memory
    monkeypatch.setattr(spawned, "FRESH_ABOVE_MB", 1)
    assert spawned.start_method() == "fresh"
    monkeypatch.setattr(spawned, "FRESH_ABOVE_MB", 1 << 20)
    assert spawned.start_method() == "fork"
    monkeypatch.setenv("LABPIPE_WORKER_START", "fresh")
    assert spawned.start_method() == "fresh"
    monkeypatch.setenv("LABPIPE_WORKER_START", "thread")
    with pytest.raises(ValueError, match="LABPIPE_WORKER_START='thread': expected 'fork' or 'fresh'"):
        Pool({"default": 1}).start()


def kills_its_worker():
    import os
    import signal
    import time

    os.kill(os.getppid(), signal.SIGKILL)  # what an out-of-memory kill or a native crash in the worker does
    time.sleep(5)


def test_a_task_that_keeps_killing_its_worker_is_failed_by_name_and_the_pool_keeps_serving():
    with Pool({"default": 1}, lease_seconds=2.0) as pool:
        poison = [Task.create_function_task(kills_its_worker, retry_on_failure=10) for _ in range(3)]
        for t in poison:
            Task.enqueue(t)
        good = Task.enqueue(Task.create_function_task(add, a=1))
        wait_for_tasks([*poison, good], status=["completed", "failed"], raise_on_status=None, timeout=WAIT)
        assert good.artifacts["return_object"].get() == 2
        for t in poison:
            t.reload()
            assert t.status == "failed" and t.data.attempt == 3
            assert t.id in t.get_status_message() and "worker lost 3 times" in t.get_status_message()
        assert pool.running and len(pool.pids) == 1


def test_a_pool_on_a_store_that_went_bad_stops_and_says_why(store):
    pool = Pool({"default": 1}).start()
    try:
        wait_until(lambda: store_leases.live_workers(get_database(), 10))
        (store / "labpipe.db").write_bytes(b"no longer a database" * 100)
        for suffix in ("-wal", "-shm"):
            (store / f"labpipe.db{suffix}").unlink(missing_ok=True)
        os.kill(pool.pids[0], signal.SIGKILL)  # its replacement cannot open the store
        wait_until(lambda: not pool.running, timeout=10)
        assert "not a labpipe store database" in pool.failure
    finally:
        pids = pool.pids
        pool.stop()
    assert not [p for p in pids if alive(p)]


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_busy_pool_releases_a_lost_owners_task_within_the_lease(tmp_path, store, how):
    """The pool's only worker is busy, nobody waits: the monitor's timer is what releases the task
    of another owner that was killed (lease 60 s: judged by its process) or hung (lease 1 s: judged by
    its silent heartbeat)."""
    lease = 60.0 if how == "killed" else 1.0
    code = textwrap.dedent(f"""
        from labpipe.agent.worker import Worker, WorkerConfig
        Worker(WorkerConfig({str(store)!r}, ("elsewhere",), lease_seconds={lease})).serve()
    """)
    owner = subprocess.Popen([sys.executable, "-c", code])
    try:
        with Pool({"default": 1}):
            busy = Task.enqueue(Task.create_function_task(sleeper, pid_file=str(tmp_path / "busy")))
            started_child(tmp_path / "busy")
            lost = Task.create_function_task(sleeper, pid_file=str(tmp_path / "lost"))
            Task.enqueue(lost, queue_name="elsewhere")
            started_child(tmp_path / "lost")
            owner.send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
            start = time.monotonic()
            wait_until(lambda: lost.get_status() != "in_progress", timeout=lease + 5 if how == "hung" else 10)
            assert time.monotonic() - start <= (2.0 if how == "killed" else lease + 2.0)
            assert lost.get_status() == "failed" and "worker lost" in lost.get_status_message()
            assert busy.get_status() == "in_progress"
            busy.mark_stopped()
    finally:
        owner.kill()
        owner.wait(5)
