"""The built-in worker pool: worker processes started by whoever needs work done, stopped with it.

    with Pool(queues={"default": 2, "services": 1}):
        task = Task.enqueue(task, queue_name="default")
        task.wait_for_status()

Each worker is a process forked by the standard library's `multiprocessing` ("fork" context) running
`worker.worker_main` on one queue (or, for a heavy owner, a fresh interpreter: agent/spawned.py). Not
the `multiprocess` package: with fork nothing is pickled, so its dill pickling would do no work, and
it costs ~45 ms to import against ~13 ms (measured; both fork a worker in ~3.5 ms).
Why the pool forks its workers from a thread of its own (the monitor): Linux delivers a worker's
parent-death signal when the *thread* that forked it exits, so the forking thread must live exactly as
long as the pool. If the owner dies, even by kill -9, its workers get SIGTERM from the kernel (and
watch their parent pid as well), end their tasks' processes and exit: no orphans.

The monitor also notices a worker that died (kill -9, out of memory): it ends that worker's lease at
once, so its task is re-queued or failed "worker lost" without waiting for the lease to lapse, and
starts a replacement. A queue that a live `labpipe agent` daemon serves is left to the daemon.

A slot whose worker dies is always restarted, never given up: at once when the death is explained
(it was running a task: that task is charged, and failed as poison after config.POISON_RUNS deaths;
or it had been serving), with a doubling backoff (0.1 s up to 5 s) while its workers die before they
ever serve. When every slot's workers keep dying that way, or the store itself has gone bad, the pool
stops and says why in `failure`: an agent that cannot serve exits (non-zero) rather than idle on.
Twice a second the monitor also reaps lapsed leases of any owner (store/leases.py), so a dead agent's
tasks are released within the lease even while every worker is busy.

The `services` queue is served in services mode, as `clearml-agent --services-mode` serves it: several
of its tasks run at once (a pipeline controller, and steps it puts on `services` itself, or several
controllers). The pool starts with one services worker and adds another whenever a task waits there
while every services worker is busy, up to `max_services` (default MAX_SERVICES, env
LABPIPE_MAX_SERVICES, `labpipe agent --max-services N`); added workers stay until the pool stops.
Why grow on demand rather than start the bound at once: a controller mostly waits, and most runs
need one or two. A controller that runs under a services worker leaves `services` to that worker's
pool (ENV_SERVICES_ABOVE), so the bound holds for the whole tree. At the bound, when every services
worker runs a controller and a task still waits there, it can never start if those controllers wait
on it: the pool says so, naming the task, the queue and the bound, in its log and on the console of
the waiting task's pipeline.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import LEASE_SECONDS, store_path
from ..errors import LabpipeError, StoreError
from ..store import leases, outputs
from ..store.db import check_store, get_database
from ..waiting import WORKER_MAX_AGE
from .spawned import FreshWorker, start_method
from .worker import ENV_SERVICES_ABOVE, WorkerConfig, worker_main

log = logging.getLogger(__name__)

MONITOR_SECONDS = 0.25
REAP_SECONDS = 0.5  # how often the monitor reaps lapsed leases (of any owner, not only its own workers)
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_BACKOFF_FIRST = 0.1  # restart delay after a worker died before serving; doubles each time, up to:
_BACKOFF_MAX = 5.0
_EARLY_DEATHS = 3  # when every slot's workers died this often in a row before serving, the pool cannot serve

SERVICES = "services"
#: the most tasks a pool (or `labpipe agent`) runs at once from the services queue, unless told
MAX_SERVICES = int(os.environ.get("LABPIPE_MAX_SERVICES", "8"))
#: seconds a task waits on `services` at the bound, every worker running a controller, before the warning
BOUND_WARNING_AFTER = float(os.environ.get("LABPIPE_BOUND_WARNING_AFTER", "5"))


@dataclass
class _Slot:
    queues: tuple[str, ...]
    process: Any = None
    served: bool = False  # whether its current worker has registered (got to its serving loop)
    early_deaths: int = 0  # consecutive deaths of its workers before they registered
    restart_at: float = 0.0  # monotonic time before which no replacement is started
    exit_codes: deque = field(default_factory=lambda: deque(maxlen=3))
    elastic: bool = False  # one of the services group, which grows on demand up to max_services


def _plan(queues: Mapping[str, int] | Iterable[str] | None) -> dict[str, int]:
    """{queue: worker count}: one per core for ordinary queues, one for `services`, unless told."""
    cores = os.cpu_count() or 1
    if queues is None:
        return {"default": cores, "services": 1}
    if isinstance(queues, str):
        queues = [queues]
    if isinstance(queues, Mapping):
        plan = {str(q): int(n) for q, n in queues.items()}
    else:
        plan = {str(q): (1 if q == "services" else cores) for q in queues}
    bad = {q: n for q, n in plan.items() if n < 0}
    if bad:
        raise ValueError(f"worker counts must be >= 0, got {bad}")
    return plan


class Pool:
    """Worker processes serving queues of one store, owned by this process.

    queues: {queue: number of workers} (default {"default": cores, "services": 1}), or a list of
        queue names (one worker per core each, one for `services`).
    store: the store folder (default: the one this process uses).
    lease_seconds: how long a worker's claim on a task lasts without renewal (a killed worker's task
        is noticed at the latest this long after; at once if this pool saw the worker die).
    grace: on stop, how long running tasks may go on before they are stopped and re-queued.
    max_services: the most services tasks run at once (default MAX_SERVICES: 8, env
        LABPIPE_MAX_SERVICES); the count given for `services` is how many workers it starts with.
    """

    def __init__(
        self,
        queues: Mapping[str, int] | Iterable[str] | None = None,
        store: str | os.PathLike | None = None,
        *,
        lease_seconds: float | None = None,
        grace: float = 5.0,
        max_services: int | None = None,
    ):
        self.store = Path(store).expanduser().absolute() if store is not None else store_path()
        self.max_services = int(max_services if max_services is not None else MAX_SERVICES)
        if self.max_services < 1:
            raise ValueError(f"max_services must be >= 1, got {self.max_services}")
        self._services_seen: dict[str, float] = {}  # task waiting on services at the bound -> first seen
        self._services_warned: set[str] = set()
        self.lease_seconds = float(lease_seconds or LEASE_SECONDS)
        self.grace = float(grace)
        self.kind = "pool"
        self._respect_daemons = True
        self._slots: list[_Slot] = []
        self._pending: list[tuple[str, int]] = list(_plan(queues).items())
        self.skipped: list[str] = []  # queues left to a daemon
        self._lock = threading.RLock()
        self._kick = threading.Event()
        self._stopping = False
        self._launched = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner = os.getpid()
        self._start_method = "fork"  # decided at start(): see agent/spawned.py
        self.failure: str | None = None  # why the pool stopped on its own (it could not serve), if it did
        self._next_reap = 0.0

    @classmethod
    def for_daemon(cls, queues: Iterable[str], workers: int, store: str | os.PathLike | None = None, *,
                   lease_seconds: float | None = None, grace: float = 5.0, max_services: int | None = None) -> Pool:
        """A pool registered as a daemon: `workers` processes each serving the other `queues` in order,
        and `services` (if named) in services mode, up to `max_services` tasks at once."""
        pool = cls({}, store, lease_seconds=lease_seconds, grace=grace, max_services=max_services)
        pool.kind = "daemon"
        pool._respect_daemons = False  # daemons share their queues with other daemons
        queues = list(dict.fromkeys(queues))
        others = tuple(q for q in queues if q != SERVICES)
        if others:
            pool._slots = [_Slot(others) for _ in range(max(1, int(workers)))]
        if SERVICES in queues:
            pool._slots.append(_Slot((SERVICES,), elastic=True))
        return pool

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> Pool:
        """Start the worker processes (returns once they are forked); safe to call twice."""
        with self._lock:
            if self._thread is not None:
                return self
            self._plan_pending()
            # multiprocessing joins its (non-daemon) processes in an atexit hook it registers on import;
            # atexit runs hooks last-in first-out, so import it first: our stop() must run before that join.
            import multiprocessing.util  # noqa: F401

            self._start_method = "fork" if self.kind == "daemon" else start_method()
            self._thread = threading.Thread(target=self._monitor, name="labpipe-pool", daemon=True)
            self._thread.start()
            atexit.register(self.stop)
        self._launched.wait(30)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers: running tasks get `grace` seconds, then are re-queued. Idempotent."""
        with self._lock:
            thread, self._stopping = self._thread, True
        atexit.unregister(self.stop)
        if thread is None or os.getpid() != self._owner:
            return
        self._kick.set()
        thread.join(self.grace + timeout)

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def pids(self) -> list[int]:
        """Pids of the live worker processes."""
        with self._lock:
            return [s.process.pid for s in self._slots if s.process is not None and s.process.exitcode is None]

    @property
    def queues(self) -> dict[str, int]:
        """{queue: worker processes serving it} for this pool."""
        out: dict[str, int] = {}
        with self._lock:
            for slot in self._slots:
                for q in slot.queues:
                    out[q] = out.get(q, 0) + 1
        return out

    def add_queues(self, queues: Mapping[str, int] | Iterable[str]) -> None:
        """Serve more queues (those this pool or a daemon already serves are left as they are)."""
        with self._lock:
            have = self.queues
            self._pending += [(q, n) for q, n in _plan(queues).items() if q not in have and q not in self.skipped]
            if self._thread is None:
                return
            self._plan_pending()
            self._launched.clear()
            self._kick.set()
        self._launched.wait(30)

    def _plan_pending(self) -> None:
        """Turn requested queues into worker slots, leaving daemon-served queues alone (and `services`
        to the services worker whose task this process is, if it is one)."""
        served: set[str] = set()
        if self._respect_daemons and self._pending:
            db = get_database(self.store)
            served = {q for w in leases.live_workers(db, WORKER_MAX_AGE) if w["kind"] == "daemon" for q in w["queues"]}
            if os.environ.get(ENV_SERVICES_ABOVE) and SERVICES not in served:
                log.debug("queue 'services' is served by the services worker running this task; the pool leaves it to it")
                served.add(SERVICES)
        for queue, count in self._pending:
            if queue in served:
                log.info("queue %r is served by a labpipe agent daemon; the pool leaves it to it", queue)
                self.skipped.append(queue)
                continue
            elastic = queue == SERVICES
            if elastic:
                self.max_services = max(self.max_services, count)
            self._slots += [_Slot((queue,), elastic=elastic) for _ in range(count)]
        self._pending = []

    # -- the monitor thread --------------------------------------------------------------

    def _monitor(self) -> None:
        # Workers are forked (or started) from this thread with stop signals blocked, and unblock them
        # once their own handlers are in place (Worker.serve). Otherwise a SIGTERM in between would run
        # a handler inherited from the owner (a daemon's: it only sets a flag in the owner's memory)
        # and be lost, and the worker would serve on until the pool's grace ran out and it was killed.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            while True:
                with self._lock:
                    stopping = self._stopping or self.failure is not None
                    if not stopping:
                        now = time.monotonic()
                        for slot in self._slots:
                            if slot.process is None and now >= slot.restart_at:
                                self._launch(slot)
                self._launched.set()
                if stopping:
                    break
                self._check_workers()
                self._serve_services()
                self._reap()
                now = time.monotonic()
                waits = [s.restart_at - now for s in self._slots if s.process is None]
                self._kick.wait(max(0.0, min([MONITOR_SECONDS, *waits])))
                self._kick.clear()
        finally:
            self._launched.set()
            self._shutdown()

    def _launch(self, slot: _Slot) -> None:
        config = WorkerConfig(str(self.store), slot.queues, self.kind, self.lease_seconds, self.grace, services=slot.elastic)
        if self._start_method == "fresh":  # a heavy owner: see agent/spawned.py
            proc = FreshWorker(config, os.getpid())
        else:
            import multiprocessing

            proc = multiprocessing.get_context("fork").Process(
                target=worker_main, args=(config, os.getpid()), name=f"labpipe-{self.kind}-{'+'.join(slot.queues)}", daemon=False
            )
        proc.start()
        slot.process = proc

    def _check_workers(self) -> None:
        """A worker that died on its own: free its task now, and start another in its place (see the
        module docstring for when, and for when the pool gives up altogether)."""
        unserved = [s for s in self._slots if s.process is not None and not s.served]
        if unserved:  # workers still starting: has each got to serving yet? (another process may
            try:      # remove a dead worker's row before this pool notices the death)
                registered = leases.registered_workers(get_database(self.store), [self._worker_id(s.process.pid) for s in unserved])
            except LabpipeError:
                registered = set()
            for slot in unserved:
                slot.served = self._worker_id(slot.process.pid) in registered
        for slot in self._slots:
            proc = slot.process
            if proc is None or proc.exitcode is None:
                continue
            held = self._forget(proc.pid)
            served = slot.served
            slot.process, slot.served = None, False
            slot.exit_codes.append(proc.exitcode)
            where = "+".join(slot.queues)
            if held or served:
                slot.early_deaths, slot.restart_at = 0, 0.0
                log.warning("pool worker %d for %s exited (code %s)%s; starting another", proc.pid, where, proc.exitcode,
                            f" while running {', '.join(held)}" if held else "")
                continue
            slot.early_deaths += 1
            delay = min(_BACKOFF_FIRST * 2 ** (slot.early_deaths - 1), _BACKOFF_MAX)
            slot.restart_at = time.monotonic() + delay
            log.warning("pool worker %d for %s exited (code %s) before it served; starting another in %.1f s",
                        proc.pid, where, proc.exitcode, delay)
            self._check_can_serve()

    def _check_can_serve(self) -> None:
        """Stop the pool (setting `failure`) when the store went bad or no slot's workers get to serve."""
        try:
            check_store(self.store)
        except StoreError as exc:
            self.failure = str(exc)
        else:
            if all(s.early_deaths >= _EARLY_DEATHS for s in self._slots):
                codes = sorted({c for s in self._slots for c in s.exit_codes})
                self.failure = (f"its worker processes for {', '.join(sorted(self.queues))} keep exiting before they serve "
                                f"(exit codes {', '.join(map(str, codes))}; the log above says why)")
        if self.failure is not None:
            log.error("labpipe %s on %s cannot serve, stopping: %s", self.kind, self.store, self.failure)

    def _serve_services(self) -> None:
        """Services mode: a task waiting on `services` while every services worker is busy gets another
        worker, up to max_services; at the bound, a wait that cannot end is reported (_report_bound)."""
        group = [s for s in self._slots if s.elastic]
        if not group:
            return
        try:
            db = get_database(self.store)
            if not leases.has_queued(db, (SERVICES,)):
                self._services_seen.clear()
                return
            if any(s.process is None or not s.served for s in group):
                return  # a worker is starting: it claims the task when it gets to serving
            held = leases.running_on(db, [self._worker_id(s.process.pid) for s in group])
            if len(held) < len(group):
                return  # an idle worker is about to claim it
            if len(group) < self.max_services:
                with self._lock:
                    self._slots.append(_Slot((SERVICES,), elastic=True))
                log.info("services: all %d worker(s) busy and a task waits; starting another (at most %d at once)",
                         len(group), self.max_services)
                self._kick.set()
                return
            self._report_bound(db, list(held.values()))
        except LabpipeError as exc:
            log.warning("could not look at the services queue of %s: %s", self.store, exc)

    def _report_bound(self, db, running: list) -> None:
        """At max_services, with every services worker running a pipeline controller: a task that waits
        on `services` starts only when one of them ends, which never happens if they wait on it. Say so
        once per task (after BOUND_WARNING_AFTER s), naming it, the queue and the bound."""
        if any(r["type"] != "controller" for r in running):
            self._services_seen.clear()  # an ordinary task will end and free its worker
            return
        now = time.monotonic()
        waiting = leases.queued_on(db, SERVICES)
        ids = {r["id"] for r in waiting}
        self._services_seen = {k: v for k, v in self._services_seen.items() if k in ids}
        controllers = ", ".join(sorted(f"{r['name']!r}" for r in running))
        for row in waiting:
            first = self._services_seen.setdefault(row["id"], now)
            if row["id"] in self._services_warned or now - first < BOUND_WARNING_AFTER:
                continue
            self._services_warned.add(row["id"])
            what = "pipeline" if row["type"] == "controller" else "step"
            text = (f"{what} {row['name']!r} (task {row['id']}) waits on queue 'services', but all {self.max_services} "
                    f"services workers run pipeline controllers ({controllers}): the bound of --max-services "
                    f"{self.max_services} is reached, so it starts only when one of them ends, never if they wait on it. "
                    f"Raise it (`labpipe agent --services --max-services N`, or LABPIPE_MAX_SERVICES for the built-in "
                    f"pool), or put the step on another queue (execution_queue=)")
            log.warning("%s", text)
            for task_id in dict.fromkeys(t for t in (row["parent"], row["id"]) if t):
                outputs.add_console(db, task_id, "stderr", f"labpipe: warning: {text}\n")

    def _reap(self) -> None:
        """Release tasks whose owner died or went silent, whoever owned them (see store/leases.py)."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + REAP_SECONDS
        try:
            for task_id, status in leases.reap_expired(get_database(self.store)):
                log.warning("task %s: its worker was lost; now %s", task_id, status)
        except LabpipeError as exc:
            log.warning("could not reap lapsed leases in %s: %s", self.store, exc)

    def _worker_id(self, pid: int) -> str:
        return f"{self.kind}:{socket.gethostname()}:{pid}"

    def _forget(self, pid: int) -> list[str]:
        """Expire the leases and remove the row of a dead worker process of this pool; returns the
        tasks it was running."""
        worker_id = self._worker_id(pid)
        try:
            db = get_database(self.store)
            held = leases.worker_tasks(db, worker_id)
            if held and leases.expire_worker(db, worker_id):
                for task_id, status in leases.reap_expired(db):
                    log.warning("task %s: its worker %s died; now %s", task_id, worker_id, status)
            leases.unregister_worker(db, worker_id)
            return held
        except LabpipeError as exc:
            log.warning("could not clean up after worker %s: %s", worker_id, exc)
            return []

    def _shutdown(self) -> None:
        """SIGTERM every worker, give them the grace period (plus a little), then SIGKILL what is left."""
        procs = [s.process for s in self._slots if s.process is not None]
        for p in procs:
            if p.exitcode is None:
                p.terminate()
        deadline = time.monotonic() + self.grace + 3.0
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.exitcode is None:
                log.warning("pool worker %d did not stop in time; killing it", p.pid)
                p.kill()
                p.join(2.0)
                self._forget(p.pid)
        for slot in self._slots:
            slot.process = None


_shared: Pool | None = None
_shared_lock = threading.Lock()


def ensure_pool(queues: Mapping[str, int] | Iterable[str] = ("default",), store: str | os.PathLike | None = None) -> Pool:
    """This process's pool, started on first use and stopped at exit, serving at least `queues`.

    queues: {queue: workers} or queue names (see Pool). For pipelines: call before enqueueing steps.
    A pool started for another store, or inherited through fork, is not reused.
    """
    global _shared
    root = Path(store).expanduser().absolute() if store is not None else store_path()
    with _shared_lock:
        pool = _shared
        if pool is not None and (pool._owner != os.getpid() or pool.store != root or not pool.running):
            if pool._owner == os.getpid():
                pool.stop()
            pool = None
        if pool is None:
            pool = _shared = Pool(queues, root).start()
        else:
            pool.add_queues(queues)
        return pool


def stop_own_pool() -> None:
    """Stop this process's pool (`ensure_pool`'s) if this process started it; one inherited through
    fork is its parent's to stop. For a task's process that started a pool: it leaves by os._exit,
    which skips the atexit hook that would stop it."""
    pool = _shared
    if pool is not None and pool._owner == os.getpid():
        pool.stop()
