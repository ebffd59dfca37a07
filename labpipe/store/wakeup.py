"""Waking idle workers the moment a task is enqueued (and controllers the moment a step ends), so
they need not poll hard.

One FIFO per queue under `<store>/wake/`. An idle worker waits on the FIFOs of its queues (with a
timeout, so it still polls slowly); `Task.enqueue` writes one byte into the queue's FIFO. A FIFO, not
a socket: its path has no length limit (a UNIX socket path does, ~100 bytes, which deep temp folders
exceed), opening it for writing fails at once (ENXIO) when no worker listens, and a full FIFO just
means plenty of wake-ups are already pending. Workers open it read-write so it never reports EOF.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import stat

WAKE_DIR = "wake"
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def fifo_path(store_root: str | os.PathLike, queue: str) -> str:
    """The FIFO that wakes the workers of `queue` (odd queue names are hashed into a file name)."""
    name = queue if _PLAIN.fullmatch(queue) else "q-" + hashlib.sha1(queue.encode()).hexdigest()[:24]
    return os.path.join(os.fspath(store_root), WAKE_DIR, name + ".fifo")


def pipeline_channel(pipeline_id: str) -> str:
    """The wake-up channel of a pipeline's controller: workers poke it when one of its steps ends."""
    return f"pipeline-{pipeline_id}"


def poke(store_root: str | os.PathLike, queue: str) -> None:
    """Wake one idle worker of `queue`, if any listens; costs a few microseconds, never blocks or raises."""
    try:
        fd = os.open(fifo_path(store_root, queue), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no FIFO (no worker ever served the queue) or no worker listening now
        return
    try:
        os.write(fd, b"\0")
    except OSError:  # full: wake-ups are already pending
        pass
    finally:
        os.close(fd)


def readable(fds: list[int], timeout: float) -> list[int]:
    """Those of `fds` that can be read within `timeout` seconds (poll(): any fd number, unlike
    select(), which fails past 1023 in a process holding many files, a long notebook session)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(max(0, timeout) * 1000)]


class Listener:
    """The read ends of the wake-up FIFOs of some queues, for a worker's select()."""

    def __init__(self, store_root: str | os.PathLike, queues: list[str] | tuple[str, ...]):
        folder = os.path.join(os.fspath(store_root), WAKE_DIR)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.fds: list[int] = []
        for queue in dict.fromkeys(queues):
            path = fifo_path(store_root, queue)
            try:
                os.mkfifo(path, 0o600)
            except FileExistsError:
                if not stat.S_ISFIFO(os.stat(path).st_mode):
                    os.replace(path, path + ".not-a-fifo")
                    os.mkfifo(path, 0o600)
            self.fds.append(os.open(path, os.O_RDWR | os.O_NONBLOCK))

    def drain(self) -> None:
        """Consume pending wake-ups (the worker is about to look at its queues anyway)."""
        for fd in self.fds:
            try:
                while os.read(fd, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
