"""The built-in worker pool: worker processes started by whoever needs work done, stopped with it.

    with Pool(queues={"default": 2, "services": 1}):
        task = Task.enqueue(task, queue_name="default")
        task.wait_for_status()

Each worker is a process of the `multiprocess` package running `worker.worker_main` on one queue.
Why the pool forks its workers from a thread of its own (the monitor): Linux delivers a worker's
parent-death signal when the *thread* that forked it exits, so the forking thread must live exactly as
long as the pool. If the owner dies, even by kill -9, its workers get SIGTERM from the kernel (and
watch their parent pid as well), end their tasks' processes and exit: no orphans.

The monitor also notices a worker that died (kill -9, out of memory): it ends that worker's lease at
once, so its task is re-queued or failed "worker lost" without waiting for the lease to lapse, and
starts a replacement. A queue that a live `labpipe agent` daemon serves is left to the daemon.
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
from ..errors import LabpipeError
from ..store import leases
from ..store.db import get_database
from ..waiting import WORKER_MAX_AGE
from .spawned import FreshWorker, start_method
from .worker import WorkerConfig, worker_main

log = logging.getLogger(__name__)

MONITOR_SECONDS = 0.25
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_RESTARTS = 5  # a worker slot that dies this often within _RESTART_WINDOW seconds is given up
_RESTART_WINDOW = 60.0


@dataclass
class _Slot:
    queues: tuple[str, ...]
    process: Any = None
    deaths: deque = field(default_factory=lambda: deque(maxlen=_RESTARTS))
    given_up: bool = False


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
    """

    def __init__(
        self,
        queues: Mapping[str, int] | Iterable[str] | None = None,
        store: str | os.PathLike | None = None,
        *,
        lease_seconds: float | None = None,
        grace: float = 5.0,
    ):
        self.store = Path(store).expanduser().absolute() if store is not None else store_path()
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

    @classmethod
    def for_daemon(cls, queues: Iterable[str], workers: int, store: str | os.PathLike | None = None, *,
                   lease_seconds: float | None = None, grace: float = 5.0) -> Pool:
        """A pool of `workers` processes each serving all `queues` in order, registered as a daemon."""
        pool = cls({}, store, lease_seconds=lease_seconds, grace=grace)
        pool.kind = "daemon"
        pool._respect_daemons = False  # daemons share their queues with other daemons
        pool._slots = [_Slot(tuple(queues)) for _ in range(max(1, int(workers)))]
        return pool

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> Pool:
        """Start the worker processes (returns once they are forked); safe to call twice."""
        with self._lock:
            if self._thread is not None:
                return self
            self._plan_pending()
            # multiprocess joins its (non-daemon) processes in an atexit hook it registers on import;
            # atexit runs hooks last-in first-out, so import it first: our stop() must run before that join.
            import multiprocess.util  # noqa: F401

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
                if not slot.given_up:
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
        """Turn requested queues into worker slots, leaving daemon-served queues alone."""
        served: set[str] = set()
        if self._respect_daemons and self._pending:
            db = get_database(self.store)
            served = {q for w in leases.live_workers(db, WORKER_MAX_AGE) if w["kind"] == "daemon" for q in w["queues"]}
        for queue, count in self._pending:
            if queue in served:
                log.info("queue %r is served by a labpipe agent daemon; the pool leaves it to it", queue)
                self.skipped.append(queue)
                continue
            self._slots += [_Slot((queue,)) for _ in range(count)]
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
                    stopping = self._stopping
                    if not stopping:
                        for slot in self._slots:
                            if slot.process is None and not slot.given_up:
                                self._launch(slot)
                self._launched.set()
                if stopping:
                    break
                self._check_workers()
                self._kick.wait(MONITOR_SECONDS)
                self._kick.clear()
        finally:
            self._launched.set()
            self._shutdown()

    def _launch(self, slot: _Slot) -> None:
        config = WorkerConfig(str(self.store), slot.queues, self.kind, self.lease_seconds, self.grace)
        if self._start_method == "fresh":  # a heavy owner: see agent/spawned.py
            proc = FreshWorker(config, os.getpid())
        else:
            import multiprocess

            proc = multiprocess.get_context("fork").Process(
                target=worker_main, args=(config, os.getpid()), name=f"labpipe-{self.kind}-{'+'.join(slot.queues)}", daemon=False
            )
        proc.start()
        slot.process = proc

    def _check_workers(self) -> None:
        """A worker that died on its own: free its task now, and start another in its place."""
        for slot in list(self._slots):
            proc = slot.process
            if proc is None or proc.exitcode is None:
                continue
            self._forget(proc.pid)
            now = time.monotonic()
            slot.deaths.append(now)
            slot.process = None
            if len(slot.deaths) == _RESTARTS and now - slot.deaths[0] < _RESTART_WINDOW:
                slot.given_up = True
                log.error("pool worker for %s died %d times within %.0f s; not restarting it",
                          "+".join(slot.queues), _RESTARTS, _RESTART_WINDOW)
            else:
                log.warning("pool worker %d for %s exited (code %s); starting another", proc.pid, "+".join(slot.queues), proc.exitcode)

    def _forget(self, pid: int) -> None:
        """Expire the leases and remove the row of a dead worker process of this pool."""
        worker_id = f"{self.kind}:{socket.gethostname()}:{pid}"
        try:
            db = get_database(self.store)
            if leases.expire_worker(db, worker_id):
                for task_id, status in leases.reap_expired(db):
                    log.warning("task %s: its worker %s died; now %s", task_id, worker_id, status)
            leases.unregister_worker(db, worker_id)
        except LabpipeError as exc:
            log.warning("could not clean up after worker %s: %s", worker_id, exc)

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
