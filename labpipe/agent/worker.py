"""A worker: one process that leases tasks from its queues and runs each in a child forked from itself.

The loop (`Worker.serve`) claims the next task with a lease, runs it (`Worker.run_task`), and
waits, cheaply, when its queues are empty: on the queues' wake-up FIFOs (`wakeup.py`), with a
timeout that grows from 2 ms to half a second. Why a child per task, forked rather than started:
- isolation: a task that raises, calls os._exit, segfaults or changes global state ends with its
  child; the worker and the next task never see it;
- speed: a fork of a process that already imported pandas and scikit-learn costs ~4 ms, a fresh
  interpreter that imports them ~1 s. So the worker itself imports, ahead of the next fork, the
  library modules earlier tasks imported (and those a task's source declares): warm workers.

While the child runs, the worker supervises it from a single thread (agent/supervision.py: one
handler per event): it pumps the child's stdout/stderr into the task's console, reads the task's
status (a user's stop kills the child's whole process group), renews the lease, and heart-beats. The end of a run is recorded fenced by its lease
(`Lease(task_id, owner, attempt)`, from the claim), so a worker that lost it can never overwrite a
newer attempt.
"""

from __future__ import annotations

import base64
import gc
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .. import params as _params
from ..config import LEASE_SECONDS
from ..errors import LabpipeError, StoreTooNew, TaskNotFound
from ..status import COMPLETED, FAILED, IN_PROGRESS, QUEUED, STOPPED
from ..store import blobs, leases, outputs, tasks, wakeup
from ..store.db import get_database
from ..store.records import Lease, TaskRow
from ..task_env import ENV_TASK_ID
from . import child as _child
from . import lifeline
from .supervision import ChildProcess, Outcome, Supervision, drain, select_readable

log = logging.getLogger(__name__)

#: (agent/pool.py reads it) set in a services worker's task processes: their pools leave `services` to it
ENV_SERVICES_ABOVE = "LABPIPE_SERVICES_ABOVE"

# A worker whose store a newer labpipe upgraded exits with this code (and one line saying so): it must
# stop writing there, and restarting it would only fail again.
EXIT_STORE_TOO_NEW = 3
HEARTBEAT_SECONDS = 2.0  # a worker row older than waiting.WORKER_MAX_AGE is considered dead
IDLE_MAX_SLEEP = 0.5  # longest wait between looks at empty queues (wake-ups usually come first)


@dataclass
class WorkerConfig:
    """What a worker serves and how.

    store: the store folder; queues: served in this order (the first non-empty one wins);
    kind: 'pool' (the built-in pool) or 'daemon' (`labpipe agent`); lease_seconds: how long a claim
    lasts unrenewed before anyone may declare the worker lost; grace: on SIGTERM, how long a running
    task may go on before it is stopped and re-queued; services: one of a services-mode group (see
    agent/pool.py): the pools its tasks start leave `services` to it.
    """

    store: str
    queues: tuple[str, ...]
    kind: str = "pool"
    lease_seconds: float = LEASE_SECONDS
    grace: float = 5.0
    services: bool = False


class Worker:
    """One worker process's state; `serve()` is its loop."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.db = get_database(config.store)
        self.store_root = Path(config.store)
        self.id = f"{config.kind}:{socket.gethostname()}:{os.getpid()}"
        self.parent = os.getppid()
        self.stopping = False
        #: when a running task must be ended and re-queued (monotonic; set by a stop signal plus the grace)
        self.stop_by: float | None = None
        self._warmed: set[str] = set()
        self._cold: set[str] = set()
        self._noticed: set[str] = set()
        #: the read end of the signal wake-up pipe (signal.set_wakeup_fd): a stop signal wakes any wait
        self.signal_fd, self._sig_w = os.pipe()
        os.set_blocking(self.signal_fd, False)
        os.set_blocking(self._sig_w, False)
        self._listener: wakeup.Listener | None = None
        self.next_beat = 0.0  #: when the worker's row is next heart-beaten (monotonic)
        self._exiting: list[int] = []  # task processes that reported and are exiting, to reap

    # -- the loop --------------------------------------------------------------------------

    def serve(self) -> int:
        """Claim and run tasks until told to stop (SIGTERM/SIGINT) or orphaned; returns an exit code."""
        signal.set_wakeup_fd(self._sig_w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # a pool starts its workers with these blocked (see Pool._monitor): one sent meanwhile is
        # delivered now, to the handler above
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        lifeline.preload()
        _child.warm_up()
        if self.config.kind == "daemon":
            # a long-lived agent imports, once at start, the libraries its queues' recent tasks used, so
            # its first task does not pay for them (a pool, started on demand, learns them as it goes)
            self._warm(leases.recent_imports(self.db, self.config.queues))
            if self._warmed:
                log.info("worker %s imported ahead: %s", self.id, ", ".join(sorted(self._warmed)))
        gc.freeze()  # objects inherited by every child: keep the collector from touching (copying) their pages
        leases.register_worker(self.db, self.id, kind=self.config.kind, queues=self.config.queues,
                              host=socket.gethostname(), pid=os.getpid())
        self._listener = wakeup.Listener(self.store_root, self.config.queues)
        queues = list(self.config.queues)
        sleep, look = 0.0, True
        try:
            while not self._should_exit():
                lease = leases.claim_next(self.db, queues, self.id, self.config.lease_seconds) if look else None
                if lease is not None:
                    self.run_task(lease)
                    sleep, look = 0.0, True
                    continue
                self._housekeeping()
                self._reap_children()
                sleep = min(max(sleep * 2, 0.002), IDLE_MAX_SLEEP)
                woken = self._wait(sleep)
                look = woken or leases.has_queued(self.db, queues)
        finally:
            self._reap_children(block=True)
            self._listener.close()
            try:
                leases.unregister_worker(self.db, self.id)
            except LabpipeError:
                pass
        return 0

    def run_task(self, lease: Lease) -> str | None:
        """Run the task this worker claimed (`lease`) from start to recorded end; returns the status it
        ended with (None when the run was taken from it meanwhile)."""
        self._reap_children()
        row = lease.task  # as the claim read it; a lease made elsewhere (a test) reads it now
        if row is None:
            try:
                row = tasks.get_task(self.db, lease.task_id)
            except TaskNotFound:
                return None  # deleted since the claim: nothing to run, nowhere to record it
        gone = self._pipeline_gone(row)
        if gone:  # a step left queued by a pipeline that was stopped or killed: nobody waits for it
            leases.finish_run(self.db, lease, STOPPED, f"not run: {gone}")
            return STOPPED
        with LeaseKeeper(self, lease) as keeper:  # a checkout or an import can outlast the lease
            problem, workdir = self._prepare(row)  # its packages, its repo checkout
            if not problem and row.script.get("kind") == "function":
                self._warm(row.script.get("imports", ()))  # what its source imports, paid once per worker
        if keeper.held != IN_PROGRESS:
            return None  # stopped or taken from us meanwhile: not ours to run
        if problem:
            return self._record(row, lease, Outcome(FAILED, problem))
        try:
            child = self._fork(row, workdir)
        except OSError as exc:  # out of processes or memory: the task did not start at all
            return self._record(row, lease, Outcome(FAILED, f"worker {self.id} could not start the task's process: {exc}"))
        outcome = self._supervise(row, lease, child)  # console, lease, stop requests, until it exits
        status = self._record(row, lease, outcome)  # fenced by the lease
        if row.type == "controller" and row.script.get("kind") == "script":
            self._note_script_exit(row, lease, child.exit_code)
        self._warm(outcome.warm)  # what it imported, for the next fork
        return status

    # -- before the run ------------------------------------------------------------------

    def _pipeline_gone(self, row: TaskRow) -> str | None:
        """Why this task, a pipeline's step, has nobody left to run for (its pipeline ended or died);
        None otherwise. A pipeline run itself is a controller whose parent may be the run it was cloned
        from, which may well have ended: that does not count."""
        return None if row.type == "controller" else leases.ended_controller(self.db, row.parent)

    def _prepare(self, row: TaskRow) -> tuple[str | None, str | None]:
        """(why it cannot run here, or None; the working folder a repo checkout gives it, or None)."""
        script = row.script or {}
        if script.get("kind") not in ("function", "script"):
            return (f"task {row.id} ({row.name!r}) has nothing for a worker to run: create it with "
                    "Task.create(script=...) or Task.create_function_task(func)"), None
        from .. import requirements

        missing = requirements.check_requirements(script.get("packages") or [])
        if missing:
            return requirements.describe_missing(row.name, missing), None
        for warning in requirements.version_warnings(script.get("packages") or []):
            text = (f"task {row.name!r} asks for {warning}; it runs with the installed version (ClearML's agent "
                    "would install the one asked for; labpipe runs in this environment)")
            outputs.add_console(self.db, row.id, "stderr", f"labpipe: warning: {text}\n")
            log.warning("%s", text)
        notice = requirements.container_notice(script)
        if notice:
            outputs.add_console(self.db, row.id, "stderr", f"labpipe: {notice}\n")
            if notice not in self._noticed:
                self._noticed.add(notice)
                log.warning("%s", notice)
        if not script.get("repo"):
            return None, None
        try:
            from ..repo import prepare_repo

            tree = prepare_repo(self.store_root, script["repo"], script.get("repo_branch"), script.get("repo_commit"))
        except LabpipeError as exc:
            return str(exc), None
        workdir = script.get("working_dir") or ""
        top = script["repo"]
        if workdir and os.path.abspath(workdir).startswith(os.path.abspath(top) + os.sep):
            return None, str(Path(tree) / os.path.relpath(workdir, top))
        return None, str(tree)

    def _warm(self, modules) -> None:
        """Import library modules here, in the worker, so the next forked children have them already."""
        fresh = False
        for name in modules:
            if name in self._warmed or name in self._cold:
                continue
            if name not in sys.modules and not _child.is_library_name(name.partition(".")[0]):
                self._cold.add(name)
                continue
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: B036 - a module that fails to import here is simply not warmed
                self._cold.add(name)
            else:
                self._warmed.add(name)
                fresh = True
        if fresh:
            gc.freeze()

    def _fork(self, row: TaskRow, workdir: str | None) -> ChildProcess:
        """Start the task's own process: a fork of this worker, which runs the function or execs the script."""
        params = [(r["section"], r["name"], _params.decode(r["value"], r["type"])) for r in tasks.get_params(self.db, row.id)]
        if workdir:
            row.script = dict(row.script, working_dir=workdir, sys_path=[workdir, *row.script.get("sys_path", [])])
        if row.script.get("kind") == "function":
            try:
                _child.compile_step(row)  # once per source in the worker, shared by every child
            except (SyntaxError, ValueError):
                pass  # the child compiles it again and reports the error on the task
        refs = _child.resolve_references(self.db, {n: v for s, n, v in params if s == "kwargs_artifacts"}) \
            if row.script.get("kind") == "function" else {}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # the task's process: never returns into the worker's loop
            code = 1
            try:
                lifeline.die_with_parent(signal.SIGKILL, expected_parent=me)
                if self.config.services:
                    os.environ[ENV_SERVICES_ABOVE] = self.id
                keep_closed = [out_r, err_r, res_r, self.signal_fd, self._sig_w, *(self._listener.fds if self._listener else [])]
                _child.prepare_process(row, out_w, err_w, keep_closed)
                if row.script.get("kind") == "function":
                    kwargs = {n: v for s, n, v in params if s == "kwargs"}
                    code = _child.run_function(self.db, row, kwargs, refs, res_w)
                else:
                    os.close(res_w)
                    _child.exec_script(row, self.store_root, _child.script_command_line(row.script, params))
            except BaseException:  # noqa: B036 - report whatever happened, then leave
                try:
                    os.write(2, traceback.format_exc().encode(errors="replace"))
                except OSError:
                    pass
            finally:
                os._exit(code)
        for fd in (out_w, err_w, res_w):
            os.close(fd)
        for fd in (out_r, err_r, res_r):
            os.set_blocking(fd, False)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        return ChildProcess(pid, pidfd, out_r, err_r, res_r)

    # -- during the run ------------------------------------------------------------------

    def _supervise(self, row: TaskRow, lease: Lease, child: ChildProcess) -> Outcome:
        """Pump console, check status and lease, honour stops and shutdowns, until the child exits
        (agent/supervision.py); a child not reaped yet is collected later, while idle."""
        outcome = Supervision(self, row, lease, child).run()
        if child.exit_code is None:
            self._exiting.append(child.pid)
        return outcome

    # -- after the run -------------------------------------------------------------------

    def _record(self, row: TaskRow, lease: Lease, outcome: Outcome) -> str | None:
        """Record the outcome, fenced by the lease; returns the task's resulting status."""
        if outcome.status in (COMPLETED, FAILED):
            arts = [
                (a["name"], blobs.BlobRef(a["hash"], a["size"], base64.b64decode(a["inline"]) if a.get("inline") else None),
                 a["kind"], a["filename"], a["preview"])
                for a in outcome.artifacts
            ]
            runtime = {"worker": self.id, "imports": outcome.imports} if outcome.imports else {"worker": self.id}
            runtime["error"] = outcome.error  # None removes an earlier attempt's (a JSON merge patch)
            status = leases.finish_run(self.db, lease, outcome.status, outcome.message,
                                      artifacts=arts, runtime=runtime, retry=True)
            if status == QUEUED:
                wakeup.poke(self.store_root, row.queue or "default")
            elif row.parent:  # a pipeline step: wake its controller, which otherwise polls slowly
                wakeup.poke(self.store_root, wakeup.pipeline_channel(row.parent))
            return status
        if outcome.status == "requeue":
            gone = self._pipeline_gone(row)
            if gone:  # a pipeline step whose controller is gone: nobody would collect a re-run
                leases.finish_run(self.db, lease, STOPPED, f"stopped with its worker: {gone}")
                return STOPPED
            if leases.requeue(self.db, lease, outcome.message):
                wakeup.poke(self.store_root, row.queue or "default")
                return QUEUED
            return None
        return STOPPED if outcome.status == "stopped" else None

    def _note_script_exit(self, row: TaskRow, lease: Lease, code: int | None) -> None:
        """Record that a pipeline's script process has ended (`runtime.script_exit`): the run may have
        ended long before (the code after `start()` went on), and whoever waits for that script, a
        caller whose own pool runs it, must not stop the pool until it has."""
        note = {"attempt": lease.attempt, "code": code}
        try:
            tasks.modify_task(self.db, row.id, lambda r: {"runtime": {**r.runtime, "script_exit": note}})
        except LabpipeError as exc:
            log.warning("worker %s: could not record the end of task %s's script: %s", self.id, row.id, exc)

    # -- idle time and signals -----------------------------------------------------------

    def _reap_children(self, block: bool = False) -> None:
        """Collect the exit status of finished task processes (no zombies left behind)."""
        for pid in list(self._exiting):
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._exiting.remove(pid)

    def _wait(self, seconds: float) -> bool:
        """Sleep until a wake-up, a signal or the timeout; True if a task was announced."""
        fds = [*self._listener.fds, self.signal_fd] if self._listener else [self.signal_fd]
        ready = select_readable(fds, seconds)
        if self.signal_fd in ready:
            drain(self.signal_fd)
        woken = any(fd != self.signal_fd for fd in ready)
        if woken and self._listener:
            self._listener.drain()
        return woken

    def _housekeeping(self) -> None:
        """While idle, every heartbeat: reap lapsed leases (a bare worker has no pool doing it)."""
        now = time.monotonic()
        if now < self.next_beat:
            return
        self.beat(None)
        try:
            for task_id, status in leases.reap_expired(self.db):
                log.warning("task %s: its worker was lost; now %s", task_id, status)
        except LabpipeError as exc:
            log.warning("worker %s: could not reap lapsed leases: %s", self.id, exc)

    def beat(self, task_id: str | None) -> None:
        """Heart-beat the worker's row (which task it runs now), then schedule the next beat."""
        try:
            leases.worker_heartbeat(self.db, self.id, task_id)
        except StoreTooNew:
            raise
        except LabpipeError as exc:  # a locked store must not kill the worker; the next beat retries
            log.warning("worker %s: heartbeat failed: %s", self.id, exc)
        self.next_beat = time.monotonic() + HEARTBEAT_SECONDS

    def _should_exit(self) -> bool:
        if os.getppid() != self.parent:  # orphaned (the parent-death signal is the first line)
            self._on_signal(signal.SIGTERM, None)
        return self.stopping

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True
        orphaned = os.getppid() != self.parent
        grace = 0.0 if orphaned else self.config.grace
        by = time.monotonic() + grace
        self.stop_by = by if self.stop_by is None else min(self.stop_by, by)


class LeaseKeeper:
    """Renews a claimed task's lease from a thread while the worker prepares it (a repo checkout, the
    imports to warm: seen taking over 10 s on a loaded machine, longer than the lease). The thread is
    joined before the worker forks the task's process, so no thread of the worker runs at fork time.
    `held` is the task's status at the last renewal (None once the lease is no longer ours)."""

    def __init__(self, worker: Worker, lease: Lease) -> None:
        self.worker, self.lease = worker, lease
        self.held: str | None = IN_PROGRESS
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_done, name="labpipe-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew_until_done(self) -> None:
        config = self.worker.config
        while not self._done.wait(config.lease_seconds / 4) and self.held == IN_PROGRESS:
            try:
                self.held = leases.renew_lease(self.worker.db, self.lease, config.lease_seconds)
            except LabpipeError as exc:  # a locked store: the next round retries
                log.warning("worker %s: could not renew the lease of task %s: %s", self.worker.id, self.lease.task_id, exc)


def worker_main(config: WorkerConfig, parent_pid: int) -> None:
    """Entry point of a worker process (a pool's or a daemon's): die with the parent, then serve."""
    lifeline.die_with_parent(signal.SIGTERM, expected_parent=parent_pid)
    _reset_after_fork()
    from ..config import set_store

    set_store(config.store)
    try:
        code = Worker(config).serve()
    except StoreTooNew as exc:
        log.error("worker %d: %s", os.getpid(), exc)
        code = EXIT_STORE_TOO_NEW
    if code:
        sys.exit(code)


def _reset_after_fork() -> None:
    """Forget state a fork inherited from the pool's owner (its current task, its console tee). The
    store's locks, which another thread of the owner may have held, are reset by store/db.py's own
    at-fork hook."""
    from ..task import Task

    Task.forget_current()
    os.environ.pop(ENV_TASK_ID, None)
    # An owner that ran Task.init() tees its console into its task and fails it on an uncaught
    # exception: neither is the worker's business.
    sys.excepthook = sys.__excepthook__
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        setattr(sys, name, getattr(stream, "original", stream))
