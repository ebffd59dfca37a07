"""Running tasks on real worker processes: isolation, results, console, stops, leases, retries.

The functions below are the tasks: a worker runs their source as a standalone script, so each
imports what it uses inside its body.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from processes import alive, wait_until

from labpipe import QueueError, StepFailed, Task
from labpipe.agent import Pool
from labpipe.function_task import ArtifactRef
from labpipe.waiting import wait_for_tasks

WAIT = 20  # seconds: generous bound for any single task on a loaded 2-core machine


# -- the tasks -------------------------------------------------------------------------------


def add(a, b=1):
    print(f"adding {a} and {b}")
    return a + b


def whoami():
    import os

    from labpipe import Task

    return Task.current_task().id, os.getcwd(), os.environ["LABPIPE_TASK_ID"]


def uses_module_level_json():
    return json.dumps([1])  # `json` is this module's import, absent on the worker


def raises():
    raise RuntimeError("the step broke")


def exits_hard():
    import os

    os._exit(7)


def segfaults():
    import ctypes

    ctypes.string_at(0)


def leaks_state():
    import json
    import os

    os.environ["LABPIPE_TEST_LEAK"] = "1"
    json.LEAKED = True
    return os.getpid()


def sees_leaked_state():
    import json
    import os

    return "LABPIPE_TEST_LEAK" in os.environ, hasattr(json, "LEAKED")


def three_values():
    return 1, 2, 3


def unpicklable():
    import threading

    return threading.Lock()


def pair():
    return "left", [1, 2]


def total(table, extra=0):
    return sum(table["rows"]) + extra


def sleeper(pid_file, seconds=30.0):
    import os
    import time

    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)


def chatty(marker):
    import os
    import time

    print("hello from the step", flush=True)
    for _ in range(400):
        if os.path.exists(marker):
            break
        time.sleep(0.01)
    return "done"


def fails_first_time(marker):
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("first attempt fails")
    return "second attempt"


def imports_wave():
    import importlib

    return importlib.import_module("wave").__name__  # hidden from the source's import statements


def reports_warm_modules():
    import sys

    return "wave" in sys.modules, "colorsys" in sys.modules


def declares_colorsys():
    import sys

    warm = "colorsys" in sys.modules  # before the import below runs: the worker imported it ahead
    import colorsys

    return warm, colorsys.__name__


def returns_a_path(path):
    return path


async def async_add(a, b=1):
    import asyncio

    await asyncio.sleep(0.01)
    return a + b


# -- helpers ---------------------------------------------------------------------------------


def run(func, pool_queue: str = "default", **kwargs) -> Task:
    task = Task.create_function_task(func, **kwargs)
    Task.enqueue(task, queue_name=pool_queue)
    try:
        task.wait_for_status(timeout=WAIT)
    except StepFailed:
        pass
    return task.reload()


@pytest.fixture
def pool():
    """A one-worker pool (so consecutive tasks share a worker), torn down with a check for leftovers."""
    p = Pool({"default": 1}, lease_seconds=2.0, grace=0.5).start()
    yield p
    pids = p.pids
    p.stop()
    assert not [pid for pid in pids if alive(pid)]


# -- function tasks ----------------------------------------------------------------------------


def test_function_task_round_trip_stores_return_value_and_console(pool):
    task = run(add, a=2, b=5)
    assert task.status == "completed"
    assert task.artifacts["return_object"].get() == 7
    assert "adding 2 and 5" in task.get_console()
    assert task.data.runtime["worker"].startswith("pool:")


def test_inside_a_step_current_task_is_the_step_and_cwd_is_its_folder(pool):
    task = run(whoami)
    tid, cwd, env_id = task.artifacts["return_object"].get()
    assert tid == env_id == task.id
    assert cwd == os.path.dirname(os.path.abspath(__file__))


def test_missing_import_fails_saying_components_run_as_standalone_scripts(pool):
    task = run(uses_module_level_json)
    assert task.status == "failed"
    message = task.data.status_message
    assert "NameError: name 'json' is not defined" in message
    assert "standalone scripts" in message and "`import json` inside the function" in message


def test_exception_traceback_goes_to_status_message_and_console(pool):
    task = run(raises)
    assert task.status == "failed"
    assert task.data.status_message == "RuntimeError: the step broke"
    console = task.get_console()
    assert "Traceback (most recent call last)" in console and 'raise RuntimeError("the step broke")' in console


@pytest.mark.parametrize("crash, message", [
    (raises, "RuntimeError"),
    (exits_hard, "exited with code 7"),
    (segfaults, "SIGSEGV"),
])
def test_a_crashing_task_does_not_take_its_worker_down(pool, crash, message):
    worker = pool.pids[0]
    task = run(crash)
    assert task.status == "failed" and message in task.data.status_message
    after = run(add, a=1)
    assert after.status == "completed" and after.artifacts["return_object"].get() == 2
    assert pool.pids == [worker]  # the same worker process ran both


def test_global_state_a_task_changes_does_not_reach_the_next_task(pool):
    first = run(leaks_state)
    assert first.status == "completed"
    second = run(sees_leaked_state)
    assert second.artifacts["return_object"].get() == (False, False)


def test_an_async_function_runs_to_completion_and_its_result_is_stored(pool):
    task = run(async_add, a=2, b=3)
    assert task.status == "completed"
    assert task.artifacts["return_object"].get() == 5


def test_a_returned_string_naming_a_file_is_returned_as_the_string(pool, tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("a,b\n")
    task = run(returns_a_path, path=str(target))
    assert task.status == "completed"
    assert task.artifacts["return_object"].get() == str(target)  # not a copy of the file


def test_return_values_are_unpacked_into_named_artifacts(pool):
    task = run(pair, return_values=["name", "items"])
    assert task.artifacts["name"].get() == "left" and task.artifacts["items"].get() == [1, 2]


def test_return_value_count_mismatch_fails_with_expected_versus_got(pool):
    task = run(three_values, return_values=["a", "b"])
    assert task.status == "failed"
    assert "expected 2 return values (a, b), got 3" in task.data.status_message


def test_unpicklable_return_value_fails_naming_it_and_its_type(pool):
    task = run(unpicklable)
    assert task.status == "failed"
    message = task.data.status_message
    assert "return value 'return_object'" in message and "lock" in message and "cannot be pickled" in message


def test_kwargs_artifact_reference_passes_another_tasks_result_to_the_worker(pool):
    producer = Task.create(task_name="producer")
    producer.upload_artifact("table", {"rows": [1, 2, 3]})
    task = run(total, table=ArtifactRef(producer.id, "table"), extra=10)
    assert task.artifacts["return_object"].get() == 16


def test_non_basic_kwargs_reach_the_function_as_objects(pool):
    np = pytest.importorskip("numpy")
    task = run(total, table={"rows": np.arange(4)})
    assert task.artifacts["return_object"].get() == 6


def test_console_is_readable_while_the_task_runs(pool, tmp_path):
    marker = tmp_path / "release"
    task = Task.create_function_task(chatty, marker=str(marker))
    Task.enqueue(task)
    wait_until(lambda: "hello from the step" in task.get_console(), timeout=5)
    assert task.get_status() == "in_progress"
    marker.touch()
    task.wait_for_status(timeout=WAIT)
    assert task.artifacts["return_object"].get() == "done"


def test_stopping_a_running_task_ends_its_process_within_a_second(pool, tmp_path):
    pid_file = tmp_path / "pid"
    task = Task.create_function_task(sleeper, pid_file=str(pid_file))
    Task.enqueue(task)
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    start = time.monotonic()
    task.mark_stopped()
    wait_until(lambda: not alive(pid), timeout=3)
    assert time.monotonic() - start < 1.0
    assert task.get_status() == "stopped"
    assert run(add, a=1).status == "completed"  # and the worker goes on


def test_failed_run_is_requeued_while_retries_remain(pool, tmp_path):
    task = run(fails_first_time, marker=str(tmp_path / "m"), retry_on_failure=1)
    assert task.status == "completed"
    assert task.artifacts["return_object"].get() == "second attempt"
    assert task.data.attempt == 2 and task.data.retries_left == 0


def test_imports_are_recorded_and_the_worker_imports_them_before_the_next_fork(pool):
    first = run(imports_wave)
    assert "wave" in first.data.runtime["imports"]
    second = run(reports_warm_modules)
    assert second.artifacts["return_object"].get()[0] is True


def test_modules_a_functions_source_imports_are_imported_by_the_worker_ahead(pool):
    task = run(declares_colorsys)
    assert task.artifacts["return_object"].get() == (True, "colorsys")


# -- script tasks ------------------------------------------------------------------------------


SCRIPT = """
import argparse
from labpipe import Task

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=0)
parser.add_argument("--verbose", action="store_true")
args = parser.parse_args()
task = Task.init(project_name="p", task_name="s")
config = task.connect({"lr": 0.1, "epochs": 1})
print("n is", args.n)
task.upload_artifact("seen", {"n": args.n, "verbose": args.verbose, "config": config})
"""


def test_script_task_runs_with_its_args_and_connect_applies_overridden_parameters(pool, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    base = Task.create(project_name="p", task_name="train", script=str(script), argparse_args=[("n", 3), ("verbose", True)])
    clone = Task.clone(base)
    clone.update_parameters({"General/lr": 0.5})
    Task.enqueue(clone)
    clone.wait_for_status(timeout=WAIT)
    seen = clone.artifacts["seen"].get()
    assert seen == {"n": 3, "verbose": True, "config": {"lr": 0.5, "epochs": 1}}
    assert "n is 3" in clone.get_console()


def test_failing_script_task_reports_its_last_error_line(pool, tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("raise SystemExit('bad input: no data')\n")
    task = Task.create(task_name="bad", script=str(script))
    Task.enqueue(task)
    with pytest.raises(StepFailed):
        task.wait_for_status(timeout=WAIT)
    assert task.get_status_message() == "bad input: no data"


# -- leases and unserved queues ------------------------------------------------------------------


def test_waiting_on_a_queue_nobody_serves_fails_naming_the_queue():
    task = Task.create_function_task(add, a=1)
    Task.enqueue(task, queue_name="gpu")
    start = time.monotonic()
    with pytest.raises(QueueError, match=r"queue 'gpu'.*labpipe agent --queue gpu"):
        wait_for_tasks([task], timeout=10, unserved_timeout=0.5)
    assert time.monotonic() - start < 3


def test_a_task_whose_worker_was_killed_is_failed_worker_lost_by_whoever_waits(tmp_path, store):
    """No pool here: a bare worker process dies; only the lapsed lease tells, and the waiter reaps it."""
    code = textwrap.dedent(f"""
        from labpipe.agent.worker import Worker, WorkerConfig
        Worker(WorkerConfig({str(store)!r}, ("lonely",), lease_seconds=1.0)).serve()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        pid_file = tmp_path / "pid"
        task = Task.create_function_task(sleeper, pid_file=str(pid_file))
        Task.enqueue(task, queue_name="lonely")
        child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
        proc.kill()
        proc.wait(5)
        wait_until(lambda: not alive(child), timeout=3)  # the task's process died with its worker
        with pytest.raises(StepFailed, match="worker lost"):
            task.wait_for_status(timeout=WAIT)
        assert task.get_status() == "failed"
    finally:
        proc.kill()
        proc.wait(5)


def test_concurrent_waiters_and_workers_keep_each_task_single_owner(pool):
    tasks = [Task.create_function_task(add, a=i) for i in range(20)]
    threads = [threading.Thread(target=Task.enqueue, args=(t,)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for_tasks(tasks, timeout=WAIT)
    assert sorted(t.artifacts["return_object"].get() for t in tasks) == list(range(1, 21))
    assert all(t.data.attempt == 1 for t in tasks)


def test_worker_exits_when_told_and_unregisters(store):
    from labpipe.store import leases as store_leases
    from labpipe.store.db import get_database

    p = Pool({"default": 1}).start()
    wait_until(lambda: store_leases.live_workers(get_database(), 10))
    pid = p.pids[0]
    p.stop()
    assert not alive(pid)
    assert store_leases.live_workers(get_database(), 10) == []


def test_a_lease_is_kept_while_a_worker_prepares_a_task_for_longer_than_the_lease(store):
    """Warm imports or a repo checkout can outlast the lease (seen: 10 s on a loaded box): the worker's
    lease keeper renews meanwhile, so no observer takes the task away before it even started."""
    from labpipe.agent import worker as worker_module
    from labpipe.store import leases
    from labpipe.store.db import get_database

    worker = worker_module.Worker(worker_module.WorkerConfig(str(store), ("prep",), lease_seconds=0.4))
    task = Task.enqueue(Task.create_function_task(add, a=1), queue_name="prep")
    lease = leases.claim_next(get_database(), ["prep"], worker.id, 0.4)
    with worker_module.LeaseKeeper(worker, lease) as keeper:
        for _ in range(10):  # 1 s of "preparation", watched by a reaper all along
            time.sleep(0.1)
            assert leases.reap_expired(get_database()) == []
    assert keeper.held == "in_progress" and task.get_status() == "in_progress"
    time.sleep(0.5)  # no keeper now: silent for longer than the lease
    assert leases.reap_expired(get_database()) == [(task.id, "failed")]


def test_a_pin_other_than_the_installed_version_warns_and_runs_but_a_missing_package_fails(pool):
    from importlib import metadata

    installed = metadata.version("scikit-learn")
    pinned = Task.create_function_task(add, a=1, packages=["scikit-learn==1.2.2", "clearml>=1.14"])
    missing = Task.create_function_task(add, a=1, packages=["nonexistent-pkg-labpipe"])
    Task.enqueue(pinned)
    Task.enqueue(missing)
    pinned.wait_for_status(timeout=WAIT)
    assert pinned.artifacts["return_object"].get() == 2
    assert f"asks for scikit-learn==1.2.2 (installed: {installed}); it runs with the installed version" in pinned.get_console()
    with pytest.raises(StepFailed, match="nonexistent-pkg-labpipe"):
        missing.wait_for_status(timeout=WAIT)
    assert "pip install nonexistent-pkg-labpipe" in missing.get_status_message()



LINES = """
import sys
import labpipe  # noqa: F401 - what makes a worker's script write whole lines
print("stdout", sys.stdout.write_through, sys.stdout.line_buffering)
print("stderr", sys.stderr.write_through, sys.stderr.line_buffering, file=sys.stderr)
"""


def test_a_script_a_worker_runs_writes_whole_lines(pool, tmp_path):
    # Started unbuffered, a script's print("total is", x) would be four writes, and a progress line
    # another thread writes to stderr could land between them in the task's console.
    script = tmp_path / "lines.py"
    script.write_text(LINES)
    task = Task.create(task_name="lines", script=str(script))
    Task.enqueue(task)
    task.wait_for_status(timeout=WAIT)
    console = task.get_console()
    assert "stdout False True" in console and "stderr False True" in console


def imports_a_missing_module():
    import labpipe_no_such_module  # noqa: F401

    return 1


def takes_anything(obj):
    return 1


def test_a_missing_module_the_steps_code_imports_says_it_is_not_installed(pool):
    task = run(imports_a_missing_module)
    message = task.data.status_message
    assert "No module named 'labpipe_no_such_module'" in message
    assert "not installed in the worker's environment" in message


def test_a_missing_module_of_unpickled_input_data_says_so_and_not_that_it_is_not_installed(pool, tmp_path):
    import importlib
    import sys

    (tmp_path / "labpipe_ghost_data.py").write_text("class Ghost:\n    pass\n")
    sys.path.insert(0, str(tmp_path))  # here only: the pool's worker was forked before, without it
    try:
        ghost = importlib.import_module("labpipe_ghost_data").Ghost()
        task = run(takes_anything, obj=ghost)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("labpipe_ghost_data", None)
    message = task.data.status_message
    assert "No module named 'labpipe_ghost_data'" in message
    assert "not installed in the worker's environment" not in message
    assert "while loading the step's input data" in message and "'labpipe_ghost_data'" in message
