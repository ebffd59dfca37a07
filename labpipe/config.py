"""Where the store lives, and labpipe's defaults.

Resolution order for the store folder: `labpipe.set_store(path)` (it also exports `LABPIPE_STORE`
so processes this one starts find the same store), then the `LABPIPE_STORE` environment variable,
then `./store` in the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_STORE = "LABPIPE_STORE"
DEFAULT_STORE = "store"

#: Artifacts at most this size live inside the SQLite file, not as files: SQLite reads and writes
#: small blobs faster than the filesystem, and the row and its bytes then commit atomically.
INLINE_BLOB_MAX = 64 * 1024

#: How long a worker's lease on a task lasts before someone else may declare the worker lost.
LEASE_SECONDS = 10.0

#: A task whose worker dies this many times while running it is failed, whatever its retries: it is
#: most likely what kills its workers (a poison task), and re-queueing it would only kill more.
POISON_RUNS = 3

_explicit: Path | None = None


def set_store(path: str | os.PathLike) -> Path:
    """Use the store folder at `path` for this process and the processes it starts.

    path: a folder (created on first use). A file, an unwritable place, or a network
    filesystem is refused with a clear message when the store is first opened.
    """
    global _explicit
    _explicit = Path(path).expanduser().absolute()
    os.environ[ENV_STORE] = str(_explicit)
    return _explicit


def store_key() -> str:
    """The configured store as given (set_store's path, else LABPIPE_STORE, else the default), not yet
    made absolute: the cheap key `store.db.get_database` looks its open Database up by on every call."""
    if _explicit is not None:
        return str(_explicit)
    return os.environ.get(ENV_STORE) or DEFAULT_STORE


def store_path() -> Path:
    """The store folder this process uses now (see the module docstring for the order)."""
    if _explicit is not None:
        return _explicit
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser().absolute()
    return Path(DEFAULT_STORE).absolute()
