"""The installed distributions: which provides each top-level module, and at which version.

A pipeline's first step pays for this when its packages are detected. importlib.metadata's own
`packages_distributions()` plus reading every version costs about 0.13 s here (it parses each
METADATA file as an e-mail and builds a Path object per installed file); `_scan` gets the same answer
from the same files in a fraction of that by reading only the header lines and file lists it needs.
The answer only changes when packages are installed or removed, so it is also kept in
`<store>/cache/` keyed by the interpreter, sys.path and the modification times of its site-packages
folders (installing or removing a package touches them).
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
    modules, versions = _scan()
    from . import contained
    from .errors import UnsafePath

    try:  # 0600 in a 0700 folder, like everything in the store
        contained.private_dir(path.parent)
        contained.replace_file(path, json.dumps({"modules": modules, "versions": versions}).encode("utf-8"))
    except (OSError, UnsafePath):  # a read-only store (or none yet, or a link planted there) works, just slower
        pass
    return modules, versions


def _scan() -> tuple[dict[str, list[str]], dict[str, str]]:
    """What importlib.metadata's `packages_distributions()` and each distribution's version say.

    Only the public `distributions()` / `read_text()` API is used; a distribution whose file list
    cannot be read that way (no RECORD, no top_level.txt) falls back to `dist.files`.
    """
    from importlib import metadata

    modules: dict[str, list[str]] = {}
    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _name_and_version(dist)
        if not name:
            continue
        versions.setdefault(name, version)
        for top in _top_level(dist):
            modules.setdefault(top, []).append(name)
    return modules, versions


def _name_and_version(dist) -> tuple[str | None, str]:
    """The Name and Version headers of the distribution's core metadata (they sit at its top)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.splitlines():
        if not line:  # the headers end at the first blank line
            break
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
        if name is not None and version is not None:
            break
    return name, version or ""


def _top_level(dist) -> list[str]:
    """The importable top-level names a distribution installs, as importlib.metadata infers them
    (Python 3.12's rule: a file's first folder, or the module name of a top-level file)."""
    declared = dist.read_text("top_level.txt")
    if declared:
        return declared.split()
    record = dist.read_text("RECORD")
    if record is not None:
        paths = (_record_path(line) for line in record.splitlines() if line)
    else:
        paths = (str(f) for f in (dist.files or ()))
    suffixes = _module_suffixes()
    tops = {}
    for path in paths:
        head, sep, _ = path.partition("/")
        if not sep:
            head = next((head[: -len(s)] for s in suffixes if head.endswith(s)), head)
        if head and "." not in head and head != "__pycache__":
            tops[head] = None
    return list(tops)


def _record_path(line: str) -> str:
    """The path field of a RECORD line (CSV: path,hash,size; a path with a comma is quoted)."""
    if line.startswith('"'):
        import csv

        return next(csv.reader([line]))[0]
    return line.partition(",")[0]


@cache
def _module_suffixes() -> list[str]:
    from importlib.machinery import all_suffixes

    return sorted(all_suffixes(), key=len, reverse=True)  # longest first: ".cpython-311-x86_64-linux-gnu.so"
