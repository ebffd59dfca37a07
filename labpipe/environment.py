"""The installed distributions: which provides each top-level module, and at which version.

Reading this from importlib.metadata walks every installed package's file list (about 0.1 s), and a
pipeline's first step pays it when its packages are detected. The answer only changes when packages
are installed or removed, so it is kept in `<store>/cache/` keyed by the interpreter, sys.path and
the modification times of its site-packages folders (installing or removing a package touches them).
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache

import xxhash


def _fingerprint() -> str:
    h = xxhash.xxh3_64()
    h.update(sys.executable.encode())
    for entry in sys.path:
        h.update(entry.encode())
        # only install locations: a script's own folder (or the working directory) changes all the time
        if entry.rstrip("/").endswith(("site-packages", "dist-packages")):
            try:
                h.update(str(os.stat(entry).st_mtime_ns).encode())
            except OSError:
                pass
    return h.hexdigest()


@cache
def installed() -> tuple[dict[str, list[str]], dict[str, str]]:
    """(top-level module -> distributions providing it, distribution -> version), cached on disk."""
    from .config import store_path

    path = store_path() / "cache" / f"distributions-{_fingerprint()}.json"
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data["modules"], data["versions"]
    except (OSError, ValueError, KeyError):
        pass
    from importlib import metadata

    modules = {k: list(v) for k, v in metadata.packages_distributions().items()}
    versions = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in versions:
            versions[name] = dist.version
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"modules": modules, "versions": versions}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only store still works, just slower
        pass
    return modules, versions
