"""Capturing a task's stdout/stderr into its console log, readable while it runs."""

from __future__ import annotations

import io
import threading
from typing import TextIO

from .store import outputs
from .store.db import Database


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
