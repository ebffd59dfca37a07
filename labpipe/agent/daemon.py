"""`labpipe agent`: the pool's worker loop as a long-lived daemon, like `clearml-agent daemon`.

Its workers register as kind 'daemon', so a built-in pool leaves their queues alone. The services
queue is served in services mode (`--services`, as `clearml-agent --services-mode`): several of its
tasks at once, up to `--max-services` (default 8). Several
daemons on one store share the work (each task is claimed by exactly one worker). SIGTERM, SIGINT or
SIGHUP stop it cleanly: running tasks may finish within the grace period, else they are re-queued.

    python -m labpipe.agent --queue default --workers 2     (same as `labpipe agent ...`; agent/__main__.py)
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence

from .pool import Pool


def run_daemon(
    queues: Sequence[str],
    workers: int,
    *,
    grace: float = 30.0,
    lease_seconds: float | None = None,
    store: str | os.PathLike | None = None,
    on_start: Callable[[Pool], None] | None = None,
    max_services: int | None = None,
) -> int:
    """Serve `queues` with `workers` processes until a stop signal; returns the exit code (0: clean).

    queues: served in this order by every worker (the first non-empty one wins); `services`, if
    named, in services mode instead: up to `max_services` of its tasks at once (see agent/pool.py).
    grace: seconds a running task may go on after a stop signal before it is re-queued.
    Returns 1 when the pool stopped on its own because it cannot serve (its `failure` says why: the
    store went bad, or its workers keep dying before they serve), so a service manager restarts it.
    """
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    pool = Pool.for_daemon(queues, workers, store, lease_seconds=lease_seconds, grace=grace, max_services=max_services)
    try:
        pool.start()
        if on_start is not None:
            on_start(pool)
        while not stop.wait(0.5):
            if not pool.running:  # the monitor stopped: it cannot serve (pool.failure says why)
                return 1
    finally:
        pool.stop()
        for sig, old in handlers.items():
            signal.signal(sig, old)
    return 0


if __name__ == "__main__":  # pragma: no cover - the entry point before agent/__main__.py, kept for old callers
    from .__main__ import main

    main()
