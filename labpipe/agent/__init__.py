"""Workers that run enqueued tasks: the built-in pool and `labpipe agent` daemons.

    from labpipe.agent import Pool
    with Pool(queues={"default": 2, "services": 1}):
        ...                      # tasks enqueued on those queues run in worker processes

Kept light on purpose: importing the package must not pull in the pool (and `multiprocessing`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pool", "ensure_pool"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import pool

        return getattr(pool, name)
    raise AttributeError(f"module 'labpipe.agent' has no attribute {name!r}")
