"""Pool workers started as fresh interpreters, for owners whose memory would make every task slow.

A worker runs each task in a child forked from itself, and a fork costs in proportion to the
memory the forking process has written to: page tables are copied, and every page the child then
touches is copied too. A pool worker forked from its owner inherits the owner's memory. When the
owner is a notebook or script holding a large dataset, every task pays for it: measured here, a
200-step chain ran at 3.4 ms/step from a lean owner and at 15.8 ms/step from one holding 1 GB of
Python objects.

So when the owner's private memory is large (`FRESH_ABOVE_MB`), the pool starts its workers as
new interpreters (`python -m labpipe.agent worker ...`, agent/__main__.py) instead of forking itself; they import labpipe
(~0.1 s once per worker) and then fork lean children. `LABPIPE_WORKER_START=fork|fresh` overrides
the choice. Not multiprocessing's "spawn" or "forkserver": those re-import the owner's `__main__`
in each worker, which re-runs a script that has no `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .worker import WorkerConfig

ENV_START = "LABPIPE_WORKER_START"
FRESH_ABOVE_MB = 256


def start_method() -> str:
    """'fork' or 'fresh': how this process's pool starts its workers (see the module docstring)."""
    chosen = os.environ.get(ENV_START, "").strip().lower()
    if chosen in ("fork", "fresh"):
        return chosen
    if chosen:
        raise ValueError(f"{ENV_START}={chosen!r}: expected 'fork' or 'fresh' (or unset, to choose by this process's memory)")
    return "fresh" if private_memory_mb() > FRESH_ABOVE_MB else "fork"


def private_memory_mb() -> float:
    """This process's anonymous resident memory (what a fork copies as it is touched), in MB; 0 if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class FreshWorker:
    """A worker process started as a new interpreter, with the part of multiprocessing.Process the pool uses."""

    def __init__(self, config: WorkerConfig, owner: int) -> None:
        self.config = config
        self.owner = owner
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ)
        # the worker must import this labpipe, wherever it is installed or checked out
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        config = json.dumps({"store": self.config.store, "queues": list(self.config.queues), "kind": self.config.kind,
                             "lease_seconds": self.config.lease_seconds, "grace": self.config.grace,
                             "services": self.config.services})
        self._proc = subprocess.Popen([sys.executable, "-m", "labpipe.agent", "worker", config, str(self.owner)],
                                      env=env, stdin=subprocess.DEVNULL, close_fds=True)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def exitcode(self) -> int | None:
        return self._proc.poll()

    def terminate(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()

    def join(self, timeout: float | None = None) -> None:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


def serve_as_worker(argv: list[str]) -> None:
    """`python -m labpipe.agent worker CONFIG_JSON OWNER_PID`: serve as one of the owner's pool workers."""
    from .worker import worker_main

    config = json.loads(argv[0])
    worker_main(WorkerConfig(config["store"], tuple(config["queues"]), config["kind"], config["lease_seconds"],
                             config["grace"], config.get("services", False)), int(argv[1]))
