"""Watching one task's process while it runs: one object per run, one handler per event.

A worker forks the task's process (`ChildProcess`) and hands it to a `Supervision`, whose `run()`
returns how the run ended (`Outcome`) once the process has exited and its pipes are drained. All of
it happens in the worker's one thread: a single select() waits for the nearest of these events.

What wakes it, and its handler:
- the child wrote to stdout/stderr, or sent its report (`on_output`): text is decoded and kept for
  the next flush, the report collected;
- the child exited (`on_exit`): its pipes get a moment to drain, since a process it started may
  still hold them;
- a signal reached the worker (`on_signal`): the worker's own handler has already moved its
  shutdown deadline; here the wake-up pipe is only drained.
Timers, each with its handler, run in this order when due:
- output flush (FLUSH_SECONDS, `on_flush_due`): pending output goes to the task's console;
- status check (CHECK_SECONDS, `on_check_due`): a user's stop, or the run taken from this worker,
  ends the child;
- lease renewal (a quarter of the lease, `on_renew_due`): lost or stopped ends the child too;
- worker heartbeat (the worker's, `on_beat_due`): the `workers` row says which task it runs;
- shutdown deadline (the worker's grace after SIGTERM, `on_shutdown_due`): the child is ended and
  the task re-queued;
- kill deadline (KILL_AFTER after the child was asked to end, `on_kill_due`): SIGKILL to its
  process group, again every KILL_AFTER until it is gone.
Ending the child is SIGTERM to its process group, so whatever it started ends too.
"""

from __future__ import annotations

import codecs
import json
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..status import COMPLETED, FAILED, IN_PROGRESS, PUBLISHED
from ..store import leases, outputs, wakeup
from ..store.records import Lease, TaskRow

if TYPE_CHECKING:
    from .worker import Worker

CHECK_SECONDS = 0.2  # how often a running task's status is read: a stop takes effect within this
FLUSH_SECONDS = 0.2  # how often a running task's console output reaches the store
KILL_AFTER = 0.5  # seconds between SIGTERM and SIGKILL when a task's process must end
DRAIN_SECONDS = 0.5  # how long the pipes of an exited child are still read (a process it started may hold them)
POLL_SECONDS = 0.05  # how often an exit is looked for when no pidfd can announce it


@dataclass
class ChildProcess:
    """A task's process as its worker forked it: pid, pidfd (None where the kernel has none), the read
    ends of its stdout, stderr and report pipes, and its exit code once reaped."""

    pid: int
    pidfd: int | None
    out: int
    err: int
    result: int
    exit_code: int | None = None  # once reaped (negative: killed by that signal)


@dataclass
class Outcome:
    """How a run ended: completed | failed | stopped (by a user) | lost (lease gone) | requeue (shutdown)."""

    status: str
    message: str = ""
    artifacts: list[dict] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    warm: list[str] = field(default_factory=list)
    #: a failed function's root cause (child.root_cause): type, message, the user's frames
    error: dict | None = None


class Supervision:
    """One run of `child`, watched until it is over (see the module docstring for the events).

    worker: the worker running it (its store, id, lease length, signal pipe, shutdown deadline and
    heartbeat); row and lease: the task and the claim the run is fenced by.
    """

    def __init__(self, worker: Worker, row: TaskRow, lease: Lease, child: ChildProcess) -> None:
        self.worker, self.row, self.lease, self.child = worker, row, lease, child
        self.streams = {child.out: "stdout", child.err: "stderr"}
        self.pending: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in self.pending}
        self.tail: deque[str] = deque(maxlen=64)  # the last of stderr: a failed script's message
        self.report = bytearray()
        self.open_fds = {child.out, child.err, child.result}
        self.wait_status: int | None = None
        self.exited_at = 0.0
        self.ending: str | None = None  # why we end it: lost | stopped | requeue
        self.kill_at: float | None = None
        now = time.monotonic()
        self.next_flush = now + FLUSH_SECONDS
        self.next_check = now + CHECK_SECONDS
        self.next_renew = now + worker.config.lease_seconds / 4

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Watch the run until it is over; returns its outcome (the console has the details)."""
        while True:
            for fd in select_readable(self._watched(), self._timeout()):
                if fd == self.worker.signal_fd:
                    self.on_signal()
                elif fd in self.open_fds:
                    self.on_output(fd)
            if self.wait_status is None:
                done, status = os.waitpid(self.child.pid, os.WNOHANG)
                if done:
                    self.on_exit(status)
            now = time.monotonic()
            if self._over(now):
                break
            for deadline, handler in self._timers():
                if deadline is not None and now >= deadline:
                    handler(now)
        self._close()
        return self._conclude()

    def _timers(self) -> list[tuple[float | None, Callable[[float], None]]]:
        """(deadline, handler) of every timer, in the order due ones run; None: not armed."""
        running = self.wait_status is None
        return [
            (self.next_flush, self.on_flush_due),
            (self.next_check, self.on_check_due),
            (self.next_renew, self.on_renew_due),
            (self.worker.next_beat, self.on_beat_due),
            (self.worker.stop_by if running else None, self.on_shutdown_due),
            (self.kill_at if running else None, self.on_kill_due),
        ]

    def _watched(self) -> list[int]:
        fds = [*self.open_fds, self.worker.signal_fd]
        if self.child.pidfd is not None and self.wait_status is None:
            fds.append(self.child.pidfd)  # readable when it exits
        return fds

    def _timeout(self) -> float:
        deadlines = [d for d, _ in self._timers() if d is not None]
        if self.child.pidfd is None or self.wait_status is not None:
            deadlines.append(time.monotonic() + POLL_SECONDS)  # nothing will announce the exit, or the pipes' end
        return max(0.0, min(deadlines) - time.monotonic())

    def _over(self, now: float) -> bool:
        if self.wait_status is not None and (not self.open_fds or now - self.exited_at > DRAIN_SECONDS):
            return True  # gone; a process it started may still hold the pipes: stop listening after a moment
        # a function step reported and closed its pipes: only its exit is left (the worker reaps it later)
        return not self.open_fds and bool(self.report) and self.ending is None

    # -- events --------------------------------------------------------------------------

    def on_output(self, fd: int) -> None:
        data = read_available(fd)
        if data is None:
            return
        if not data:
            self.open_fds.discard(fd)
        elif fd == self.child.result:
            self.report += data
        else:
            text = self.decoders[self.streams[fd]].decode(data)
            self.pending[self.streams[fd]].append(text)
            if fd == self.child.err:
                self.tail.append(text)

    def on_exit(self, wait_status: int) -> None:
        self.wait_status, self.exited_at = wait_status, time.monotonic()

    def on_signal(self) -> None:
        drain(self.worker.signal_fd)  # the worker's handler has already set its shutdown deadline

    def on_flush_due(self, now: float) -> None:
        self.flush()
        self.next_flush = now + FLUSH_SECONDS

    def on_check_due(self, now: float) -> None:
        self._judge(leases.held_status(self.worker.db, self.lease))
        self.next_check = now + CHECK_SECONDS

    def on_renew_due(self, now: float) -> None:
        if self.ending is None:
            self._judge(leases.renew_lease(self.worker.db, self.lease, self.worker.config.lease_seconds))
        self.next_renew = now + self.worker.config.lease_seconds / 4

    def on_beat_due(self, now: float) -> None:
        self.worker.beat(self.row.id)

    def on_shutdown_due(self, now: float) -> None:
        self.end("requeue")

    def on_kill_due(self, now: float) -> None:
        signal_group(self.child.pid, signal.SIGKILL)
        self.kill_at = now + KILL_AFTER

    # -- ending it -----------------------------------------------------------------------

    def _judge(self, held: str | None) -> None:
        """End the run when the lease is no longer ours (None) or the task was stopped meanwhile."""
        if held is None:
            self.end("lost")
        elif held != IN_PROGRESS and not ended_itself(self.row, held):
            self.end("stopped")

    def end(self, why: str) -> None:
        """Ask the child's process group to end (once); SIGKILL follows after KILL_AFTER."""
        if self.ending is None:
            self.ending, self.kill_at = why, time.monotonic() + KILL_AFTER
            signal_group(self.child.pid, signal.SIGTERM)

    def flush(self) -> None:
        for stream, parts in self.pending.items():
            if parts:
                text = "".join(parts)
                parts.clear()
                if text:
                    outputs.add_console(self.worker.db, self.row.id, stream, text)

    def _close(self) -> None:
        """After the loop: whatever the task left running in its group is killed, the pipes closed."""
        signal_group(self.child.pid, signal.SIGKILL)
        for fd in (self.child.out, self.child.err, self.child.result, self.child.pidfd):
            if fd is not None:
                os.close(fd)
        for name, decoder in self.decoders.items():
            self.pending[name].append(decoder.decode(b"", final=True))
        if self.wait_status is not None:
            self.child.exit_code = os.waitstatus_to_exitcode(self.wait_status)

    def _conclude(self) -> Outcome:
        """Turn how the child ended into a status and message (the console gets the details)."""
        if self.ending == "stopped":
            self.pending["stderr"].append("labpipe: task stopped; its process was ended\n")
        elif self.ending == "requeue":
            self.pending["stderr"].append(f"labpipe: worker {self.worker.id} shut down before the task finished; re-queued\n")
        self.flush()
        if self.ending is not None:
            return Outcome(self.ending, "worker shut down before the task finished; re-queued" if self.ending == "requeue" else "")
        report = self._report()
        if report is not None:  # the step's own account (its exit, maybe not reaped yet, adds nothing)
            ok = bool(report.get("ok"))
            return Outcome(COMPLETED if ok else FAILED, "" if ok else report.get("message", ""),
                           report.get("artifacts", []), report.get("imports", []), report.get("warm", []),
                           None if ok else report.get("error"))
        code = os.waitstatus_to_exitcode(self.wait_status) if self.wait_status is not None else -1
        if code == 0 and self.row.script.get("kind") == "script":
            return self._script_exited()
        why = self._why_it_died(code)
        outputs.add_console(self.worker.db, self.row.id, "stderr", f"labpipe: {why}\n")
        return Outcome(FAILED, why)

    def _report(self) -> dict | None:
        if not self.report:
            return None
        try:
            return json.loads(self.report)
        except ValueError:
            return None

    def _script_exited(self) -> Outcome:
        """A script task whose process exited 0: completed, unless it was a pipeline run it never ran."""
        script = self.row.script
        pipeline = script.get("pipeline_function") or script.get("pipeline_controller")
        if pipeline and leases.held_status(self.worker.db, self.lease) == IN_PROGRESS:
            # A pipeline run ends itself (completed, failed, stopped) when its script runs it. Still in
            # progress means the script never picked it up: its pipeline was renamed or removed since
            # the run was recorded, and whatever it did run was a new run, not this one.
            why = (f"the script {script.get('entry_point', '')} exited without running pipeline {pipeline!r} for "
                   f"this task (renamed or removed since this run was recorded?); its parameters were not used")
            outputs.add_console(self.worker.db, self.row.id, "stderr", f"labpipe: {why}\n")
            return Outcome(FAILED, why)
        return Outcome(COMPLETED)

    def _why_it_died(self, code: int) -> str:
        """The status message of a child that ended without a report (and not by our hand)."""
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return f"the task's process was killed by signal {name} ({signal.strsignal(-code) or 'unknown'})"
        if self.row.script.get("kind") == "function":
            return f"the task's process exited with code {code} before the function returned (os._exit() or a crash in native code)"
        last = [ln for ln in "".join(self.tail).strip().splitlines() if ln.strip()]
        return last[-1].strip() if last else f"the script exited with code {code}"


def ended_itself(row: TaskRow, status: str) -> bool:
    """Whether a run's task, found no longer in progress, was ended by the run itself: a pipeline
    controller's script records how its pipeline ended and then goes on with the code after
    `start()` (or the pipeline call), which must run to its end, not be killed as a stopped task."""
    return row.type == "controller" and row.script.get("kind") == "script" and status in (COMPLETED, FAILED, PUBLISHED)


def select_readable(fds: list[int], timeout: float) -> list[int]:
    """Which of `fds` are readable within `timeout` seconds."""
    try:
        return wakeup.readable(fds, timeout)
    except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
        return []


def read_available(fd: int) -> bytes | None:
    """What a pipe holds now: bytes, b"" at end of file, None if nothing yet."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def drain(fd: int) -> None:
    """Read a non-blocking pipe until it is empty."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def signal_group(pid: int, sig: int) -> None:
    """Signal the task's process group (the child and anything it started)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
