"""Leases judged without comparing clocks: heartbeats watched on each observer's own monotonic clock,
owners of this machine checked by their process, a poison task failed by name, the v2 migration."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from labpipe import Task, clock
from labpipe.store import blobs, leases, outputs, owners, tasks
from labpipe.store.db import Database, get_database

ELSEWHERE = "daemon:another-host:4242"  # an owner this process cannot judge by its pid


@pytest.fixture
def stepped_clock(monkeypatch):
    """Step this process's wall clock (labpipe.clock) in a test; restored afterwards."""
    monkeypatch.delenv(clock.ENV_OFFSET, raising=False)
    yield clock.set_offset
    clock.set_offset(0.0)
    os.environ.pop(clock.ENV_OFFSET, None)


def queued(queue="q", retries=0) -> Task:
    return Task.get_task(task_id=tasks.create_task(get_database(), name="t", retries_left=retries, queue=queue).id)


def test_owner_state_judges_a_process_of_this_machine_by_pid_and_start_time():
    me = f"pool:{socket.gethostname()}:{os.getpid()}"
    identity = owners.process_identity()
    boot, pidns, timens, start = identity.split("/")
    assert owners.owner_state(me, identity) == "alive"
    assert owners.owner_state(me, f"{boot}/{pidns}/{timens}/{int(start) + 1}") == "dead"  # the pid was reused
    assert owners.owner_state(me, f"another-boot/{pidns}/{timens}/{start}") is None  # cannot tell: not this boot
    assert owners.same_clock(identity) and not owners.same_clock(f"{boot}/{pidns}/another-time-ns/{start}")
    assert owners.owner_state(ELSEWHERE, None) is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert owners.owner_state(f"pool:{socket.gethostname()}:{gone.pid}", None) == "dead"


def test_a_lease_nobody_here_can_judge_lapses_once_its_heartbeat_stops_for_the_lease():
    db = get_database()
    task = queued()
    lease = leases.claim_next(db, ["q"], ELSEWHERE, 0.4)
    for _ in range(4):  # renewed: never lapses, though it is watched for longer than the lease
        assert leases.reap_expired(db) == []
        time.sleep(0.15)
        leases.renew_lease(db, lease, 0.4)
    assert leases.reap_expired(db) == []
    time.sleep(0.45)  # silent for longer than its lease, on this process's monotonic clock
    assert leases.reap_expired(db) == [(task.id, "failed")]
    assert "worker lost" in task.get_status_message()


def test_a_forward_clock_step_does_not_lapse_a_renewed_lease(stepped_clock):
    db = get_database()
    task = queued()
    lease = leases.claim_next(db, ["q"], ELSEWHERE, 5.0)
    stepped_clock(30.0)  # lease_until is now 25 s in this clock's past
    assert leases.reap_expired(db) == []
    leases.renew_lease(db, lease, 5.0)
    stepped_clock(-30.0)
    assert leases.reap_expired(db) == []
    assert task.get_status() == "in_progress"


def test_a_lease_written_far_ahead_lapses_when_its_heartbeat_stops(stepped_clock):
    db = get_database()
    task = queued()
    stepped_clock(600.0)  # the owner's clock runs 10 minutes ahead
    leases.claim_next(db, ["q"], ELSEWHERE, 0.3)
    stepped_clock(0.0)
    assert leases.reap_expired(db) == []
    time.sleep(0.35)
    assert leases.reap_expired(db) == [(task.id, "failed")]


def test_a_dead_owner_of_this_machine_is_released_at_once_whatever_its_lease(store):
    task = queued(retries=1)
    code = textwrap.dedent(f"""
        import socket, os
        from labpipe.store import leases
        from labpipe.store.db import get_database
        from labpipe import clock
        clock.set_offset(600.0)
        leases.claim_next(get_database({str(store)!r}), ["q"], f"daemon:{{socket.gethostname()}}:{{os.getpid()}}", 3600.0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)  # claims for an hour, 10 minutes ahead, and dies
    assert leases.reap_expired(get_database()) == [(task.id, "queued")]
    assert "is gone" in task.get_status_message()


def test_a_hung_owner_of_this_machine_is_judged_by_its_own_monotonic_renewal_time(store):
    """A fresh observer (a `labpipe tasks`, an agent just started) need not watch a silent owner of
    this machine for a whole lease: the owner's last renewal, on the machine's monotonic clock, says."""
    task = queued()
    code = textwrap.dedent(f"""
        import socket, os, sys, time
        from labpipe.store import leases
        from labpipe.store.db import get_database
        from labpipe import clock
        clock.set_offset(600.0)  # its wall clock 10 minutes ahead: lease_until says 'alive' for 10 minutes
        leases.claim_next(get_database({str(store)!r}), ["q"], f"daemon:{{socket.gethostname()}}:{{os.getpid()}}", 0.5)
        print("claimed", flush=True)
        time.sleep(60)  # alive, never renewing: hung
    """)
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "claimed"
        time.sleep(0.6)
        fresh = subprocess.run([sys.executable, "-c", "from labpipe.store import leases; from labpipe.store.db import "
                                "get_database; print(leases.reap_expired(get_database()))"], capture_output=True, text=True)
        assert fresh.stdout.strip() == str([(task.id, "failed")]), fresh.stderr
        assert "no heartbeat" in task.get_status_message()
    finally:
        owner.kill()
        owner.wait(5)


def test_a_task_whose_worker_dies_three_times_is_failed_as_poison_naming_it():
    db = get_database()
    task = queued(retries=10)
    for attempt in range(1, 4):
        lease = leases.claim_next(db, ["q"], ELSEWHERE, 60.0)
        assert lease.attempt == attempt
        leases.expire_worker(db, ELSEWHERE)  # what a pool does when it sees its worker die
        (reaped,) = leases.reap_expired(db)
    assert reaped == (task.id, "failed")
    message = task.get_status_message()
    assert task.id in message and "worker lost 3 times" in message and "kills its worker" in message
    task.reset()
    Task.enqueue(task, queue_name="q")  # a user's fresh enqueue starts the count again
    leases.claim_next(db, ["q"], ELSEWHERE, 60.0)
    leases.expire_worker(db, ELSEWHERE)
    assert leases.reap_expired(db) == [(task.id, "queued")]


def test_live_workers_are_judged_by_their_process_here_and_by_their_heartbeat_elsewhere(stepped_clock):
    db = get_database()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    leases.register_worker(db, f"daemon:{host}:{os.getpid()}", kind="daemon", queues=["q"], host=host, pid=os.getpid())
    leases.register_worker(db, f"daemon:{host}:{gone.pid}", kind="daemon", queues=["q"], host=host, pid=gone.pid)
    leases.register_worker(db, ELSEWHERE, kind="daemon", queues=["q"], host="another-host", pid=4242)
    stepped_clock(30.0)  # every heartbeat now looks 30 s old
    assert [w["id"] for w in leases.live_workers(db, 10)] == [f"daemon:{host}:{os.getpid()}"]
    leases.reap_expired(db)  # also removes the rows of dead workers of this machine
    assert leases.registered_workers(db, [f"daemon:{host}:{gone.pid}", ELSEWHERE]) == {ELSEWHERE}


def test_a_version_1_store_is_migrated_to_lease_heartbeats(tmp_path):
    root = tmp_path / "old"
    db = Database(root)
    conn = db.connection()
    for column in ("lease_seconds", "lease_beat", "lease_mono", "owner_proc", "lost_runs"):
        conn.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
    conn.execute("ALTER TABLE workers DROP COLUMN proc")
    conn.execute("PRAGMA user_version = 1")
    db.close()
    db = get_database(root)
    columns = {r["name"] for r in db.query("PRAGMA table_info(tasks)")}
    assert {"lease_seconds", "lease_beat", "lease_mono", "owner_proc", "lost_runs"} <= columns
    assert db.query_one("PRAGMA user_version")[0] >= 2
    # declared as a new store declares them (type, NOT NULL, default; added last), nothing else changed
    new = get_database(tmp_path / "new")
    for table in ("tasks", "workers"):
        assert sorted(tuple(r)[1:] for r in db.query(f"PRAGMA table_info({table})")) == \
            sorted(tuple(r)[1:] for r in new.query(f"PRAGMA table_info({table})"))
    assert db.query_one("PRAGMA recursive_triggers")[0] == 0  # the migration left the connection as it was


# -- the fence: a Lease that is no longer the task's run changes nothing -------------------------


def _stale_and_current(db) -> tuple[Task, leases.Lease, leases.Lease]:
    """A task claimed once (attempt 1), lost, and claimed again by the same owner (attempt 2): the
    first lease is stale, the second is the run now; only the attempt tells them apart."""
    task = queued(retries=1)
    stale = leases.claim_next(db, ["q"], ELSEWHERE, 60.0)
    leases.expire_worker(db, ELSEWHERE)
    assert leases.reap_expired(db) == [(task.id, "queued")]
    current = leases.claim_next(db, ["q"], ELSEWHERE, 60.0)
    assert (stale.task_id, stale.attempt, current.task_id, current.attempt) == (task.id, 1, task.id, 2)
    return task, stale, current


def _snapshot(db, task_id: str) -> tuple:
    """What a fenced-out verb must leave as it was: the row's status, times, lease and runtime, and the outputs."""
    row = tasks.get_task(db, task_id)
    beat = db.query_one("SELECT lease_beat, lease_until, lease_seconds, enqueue_seq FROM tasks WHERE id = ?", (task_id,))
    arts = [tuple(r) for r in outputs.get_artifacts(db, task_id)]
    return (row.status, row.status_message, row.completed, row.last_update, row.worker, row.attempt, row.runtime,
            row.retries_left, tuple(beat), arts)


def test_claim_next_returns_the_lease_of_the_run_it_started():
    db = get_database()
    task = queued()
    lease = leases.claim_next(db, ["q"], ELSEWHERE, 60.0)
    assert lease == leases.Lease(task.id, ELSEWHERE, 1) and hash(lease) == hash(leases.Lease(task.id, ELSEWHERE, 1))
    assert (lease.task.id, lease.task.status, lease.task.worker, lease.task.attempt) == (task.id, "in_progress", ELSEWHERE, 1)
    assert leases.current_lease(db, task.id) == lease and leases.held_status(db, lease) == "in_progress"
    with pytest.raises(dataclasses.FrozenInstanceError):
        lease.attempt = 2  # a record of one claim: never edited into another
    assert leases.claim_next(db, ["q"], ELSEWHERE, 60.0) is None  # nothing else queued


def test_a_stale_attempts_finish_run_changes_nothing_and_reports_it_was_fenced_out():
    db = get_database()
    task, stale, current = _stale_and_current(db)
    ref = blobs.prepare(db, [b"stale bytes"])
    before = _snapshot(db, task.id)
    for status in ("completed", "failed"):
        assert leases.finish_run(db, stale, status, "stale", artifacts=[("out", ref, "pickle", "", "")],
                                 runtime={"worker": ELSEWHERE}, retry=True) is None
        assert _snapshot(db, task.id) == before
    assert not blobs.exists(db, ref.hash)  # not even its inline bytes were recorded
    # Another owner with the right attempt number is fenced out too.
    assert leases.finish_run(db, leases.Lease(task.id, "daemon:a-third-host:7", current.attempt), "completed") is None
    assert _snapshot(db, task.id) == before
    # The run now finishes; after that, the stale lease still changes nothing (completed time kept).
    assert leases.finish_run(db, current, "completed", artifacts=[("out", ref, "pickle", "", "")]) == "completed"
    done = _snapshot(db, task.id)
    assert done[0] == "completed" and done[2] is not None and [a[1] for a in done[-1]] == ["out"]
    time.sleep(0.01)
    assert leases.finish_run(db, stale, "failed", "stale", runtime={"error": "x"}) is None
    assert leases.finish_run(db, current, "failed", "twice") is None  # a finished run is not finished again
    assert _snapshot(db, task.id) == done


def test_a_stale_attempts_renew_lease_changes_nothing_and_reports_it_was_fenced_out():
    db = get_database()
    task, stale, current = _stale_and_current(db)
    before = _snapshot(db, task.id)
    assert leases.renew_lease(db, stale, 600.0) is None
    assert _snapshot(db, task.id) == before  # neither the heartbeat nor lease_until moved
    assert leases.held_status(db, stale) is None
    assert leases.renew_lease(db, current, 600.0) == "in_progress"  # the run now renews
    renewed = _snapshot(db, task.id)
    assert renewed[8][0] == before[8][0] + 1 and renewed[8][2] == 600.0


def test_a_stale_attempts_requeue_changes_nothing_and_reports_it_was_fenced_out():
    db = get_database()
    task, stale, current = _stale_and_current(db)
    before = _snapshot(db, task.id)
    assert leases.requeue(db, stale, "shutting down") is False
    assert _snapshot(db, task.id) == before  # still in progress under the current run, same enqueue order
    assert leases.requeue(db, current, "shutting down") is True
    assert task.get_status() == "queued" and leases.current_lease(db, task.id) is None
    assert leases.requeue(db, current, "again") is False  # no longer in progress: nothing to put back


def test_a_stale_attempts_finish_changes_nothing_and_reports_it_was_fenced_out():
    db = get_database()
    task, stale, current = _stale_and_current(db)
    before = _snapshot(db, task.id)
    assert leases.finish(db, stale, "completed", "stale") is False
    assert _snapshot(db, task.id) == before
    assert leases.finish(db, current, "completed") is True and task.get_status() == "completed"
