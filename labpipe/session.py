"""The life of a `Task.init` task in its own process: lease renewal, console capture, exit hooks.

A script that calls `Task.init()` owns its task: a heartbeat thread renews the task's lease (so a
killed script's task is later failed "worker lost" rather than left in_progress), stdout/stderr are
teed into the console log, an uncaught exception fails the task with its traceback, and a normal exit
completes it.
"""

from __future__ import annotations

import atexit
import sys
import threading
import traceback
from typing import TYPE_CHECKING

from . import status as _status
from .config import LEASE_SECONDS
from .errors import IllegalTransition, LabpipeError
from .store import leases, outputs
from .store.records import Lease

if TYPE_CHECKING:
    from .task import Task


class LocalSession:
    """The life of a `Task.init` task in its own process: lease renewal, console capture, exit hooks."""

    def __init__(self, task: Task, owner: str, capture_output: bool):
        self.task = task
        self.owner = owner
        self._lease = Lease(task.id, owner, 1)  # a Task.init script's task runs once, as its first attempt
        self._stop = threading.Event()
        self._tees = []
        if capture_output:
            from .console import tee_streams

            self._tees = tee_streams(task.db, task.id)
        self._prev_hook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self._atexit)
        self._thread = threading.Thread(target=self._beat, name=f"labpipe-task-{task.id[:8]}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, LEASE_SECONDS / 3)):
            try:
                for tee in self._tees:
                    tee.flush_to_store()
                leases.renew_lease(self.task.db, self._lease, LEASE_SECONDS)
            except LabpipeError:
                pass

    def stop(self) -> None:
        """Stop renewing, flush and restore the console."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._tees:
            from .console import untee_streams

            untee_streams(self._tees)
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._prev_hook
        atexit.unregister(self._atexit)

    def finish(self, status: str, message: str) -> None:
        self.stop()
        leases.finish(self.task.db, self._lease, status, message)

    def _excepthook(self, etype, value, tb) -> None:
        text = "".join(traceback.format_exception(etype, value, tb))
        for tee in self._tees:
            tee.flush_to_store()
        outputs.add_console(self.task.db, self.task.id, "stderr", text)
        self.finish(_status.FAILED, text.strip().splitlines()[-1] if text.strip() else etype.__name__)
        self._prev_hook(etype, value, tb)

    def _atexit(self) -> None:
        try:
            self.finish(_status.COMPLETED, "")
        except (LabpipeError, IllegalTransition):
            pass
