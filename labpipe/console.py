"""Capturing a task's stdout/stderr into its console log, readable while it runs; and finding the
terminal beneath that capture (where a progress view draws)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from typing import TextIO

from .store import outputs
from .store.db import Database
from .task_env import ENV_TASK_ID


class ConsoleTee(io.TextIOBase):
    """A text stream that writes through to `original` and buffers a copy for the task's console.

    `flush_to_store()` (called by a heartbeat thread and at the end) moves the buffer to the store,
    so the log can be followed with `labpipe show ID --log` while the task runs.
    """

    def __init__(self, original: TextIO, db: Database, task_id: str, stream: str):
        self.original = original
        self._db = db
        self._task_id = task_id
        self._stream = stream
        self._buf: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        self.original.write(text)
        with self._lock:
            self._buf.append(text)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.original.fileno()

    def flush_to_store(self) -> None:
        with self._lock:
            text, self._buf = "".join(self._buf), []
        if text:
            outputs.add_console(self._db, self._task_id, self._stream, text)


def tee_streams(db: Database, task_id: str) -> list[ConsoleTee]:
    """Point sys.stdout/sys.stderr at tees into the task's console; returns [stdout tee, stderr tee]."""
    import sys

    tees = [ConsoleTee(sys.stdout, db, task_id, "stdout"), ConsoleTee(sys.stderr, db, task_id, "stderr")]
    sys.stdout, sys.stderr = tees
    return tees


def untee_streams(tees: list[ConsoleTee]) -> None:
    """Undo `tee_streams` (where the streams are still ours) and move what is buffered to the store."""
    import sys

    if tees and sys.stdout is tees[0]:
        sys.stdout = tees[0].original
    if tees and sys.stderr is tees[1]:
        sys.stderr = tees[1].original
    for tee in tees:
        tee.flush_to_store()


class captured_console:  # noqa: N801 - used as a context manager, like contextlib's
    """Tee this process's stdout/stderr into a task's console while the block runs (a pipeline
    controller running in the user's own process: what it prints shows in `labpipe show ID --log`,
    as a ClearML controller's console does). Flushed to the store every second and at the end.

    Only in the main thread, and only if nothing captures the streams already (a worker runs the
    controller with its output piped to the task; a `Task.init` session tees them itself).
    """

    def __init__(self, db: Database, task_id: str):
        self._db, self._task_id = db, task_id
        self._tees: list[ConsoleTee] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> captured_console:
        import os
        import sys

        if threading.current_thread() is not threading.main_thread() or os.environ.get(ENV_TASK_ID) \
                or isinstance(sys.stdout, ConsoleTee) or isinstance(sys.stderr, ConsoleTee):
            return self
        self._tees = tee_streams(self._db, self._task_id)
        self._thread = threading.Thread(target=self._flush_every_second, name="labpipe-console", daemon=True)
        self._thread.start()
        return self

    def _flush_every_second(self) -> None:
        while not self._stop.wait(1.0):
            self._flush()

    def _flush(self) -> None:
        for tee in self._tees:
            try:
                tee.flush_to_store()
            except Exception:  # noqa: BLE001 - a busy store must not break the user's prints
                pass

    def __exit__(self, *exc: object) -> None:
        if not self._tees:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            untee_streams(self._tees)
        except Exception:  # noqa: BLE001 - a busy store must not break the user's program
            pass


def terminal_stream(stream: TextIO) -> TextIO:
    """The stream beneath a console tee: where a progress view writes, so that what it draws reaches
    the person and is not stored again in the run's console."""
    while isinstance(stream, ConsoleTee):
        stream = stream.original
    return stream


def route_terminal(wrap: Callable[[TextIO], TextIO], names: Iterable[str] = ("stdout", "stderr")) -> Callable[[], None]:
    """Send what this process writes to sys.stdout / sys.stderr (`names`) through `wrap(stream)` (a
    live view prints it above itself), beneath any console tee so the tee still stores it. Returns
    the function that undoes it (where the streams are still as it left them)."""
    import sys

    undo: list[Callable[[], None]] = []
    for name in names:
        current = getattr(sys, name)
        if isinstance(current, ConsoleTee):
            tee, original = current, current.original
            proxy = tee.original = wrap(original)

            def restore(tee=tee, original=original, proxy=proxy, name=name) -> None:
                if tee.original is proxy:
                    tee.original = original
                if getattr(sys, name) is proxy:  # the tee was undone meanwhile and left our proxy in place
                    setattr(sys, name, original)
        else:
            original, proxy = current, wrap(current)
            setattr(sys, name, proxy)

            def restore(original=original, proxy=proxy, name=name) -> None:
                if getattr(sys, name) is proxy:
                    setattr(sys, name, original)
        undo.append(restore)

    def undo_all() -> None:
        for restore in undo:
            restore()

    return undo_all
