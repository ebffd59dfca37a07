"""Canonical xxhash digests of code and values: the cache keys and the blob addresses.

A cache key has two parts, stored separately so several code versions coexist (DESIGN.md, "Pipelines"):
``code_key`` (the component's normalised source, its helpers, the project's own modules it imports, and
the settings that change its result) and ``args_key`` (typed fingerprints of its arguments).
``cache_key`` joins them. A step that clones an existing task has a key of its own, ``task_step_key``.

The work is done one layer down: ``labpipe.source`` reads code (``normalize_source``,
``local_module_sources``) and ``labpipe.fingerprint`` encodes values (``fingerprint``). Those three are
re-exported here, so callers need only this module.

Every golden value in ``tests/test_hashing.py`` pins these keys: changing them silently invalidates
every user's cache, so a change must be deliberate (bump the ``v1`` in the key tags).

Imports: xxhash and those two modules only (numpy and pandas are never imported).
"""

from __future__ import annotations

import json

import xxhash

from labpipe.fingerprint import (
    encode_tag,
    fingerprint,
    fingerprint_kwargs,
    write_count,
    write_text,
    write_value,
)
from labpipe.source import local_module_sources, normalize_source

__all__ = [
    "args_key",
    "cache_key",
    "code_key",
    "task_step_key",
    "fingerprint",
    "hash_bytes",
    "local_module_sources",
    "new_hasher",
    "normalize_source",
]

# --------------------------------------------------------------------------------------------- bytes


def new_hasher() -> xxhash.xxh3_128:
    """A fresh xxh3-128 hasher, for callers that stream bytes (blobs written in chunks)."""
    return xxhash.xxh3_128()


def hash_bytes(*parts: bytes | bytearray | memoryview) -> str:
    """The xxh3-128 hex digest (32 lowercase hex chars) of the concatenation of ``parts``.

    parts: bytes-like objects, fed one by one (no concatenated copy is made).
    """
    h = new_hasher()
    for part in parts:
        try:
            h.update(part)
        except BufferError:
            # A strided memoryview has no contiguous buffer to stream; its C-order bytes are its value.
            h.update(memoryview(part).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- keys

_K_CODE = encode_tag("labpipe.code_key.v1")
_K_CACHE = encode_tag("labpipe.cache_key.v1")


def code_key(
    source: str,
    helper_sources: list[str] | tuple[str, ...] = (),
    local_modules: dict[str, str] | None = None,
    settings: dict | None = None,
) -> str:
    """The code half of a cache key: what the step runs and the settings that change its result.

    source: the component function's source (its decorator is dropped: ``settings`` stands for it).
    helper_sources: the sources of its ``helper_functions``, in any order.
    local_modules: the project's modules that the source or a helper imports, already normalised
        (``source.find_local_modules(...).sources``, or ``local_module_sources(source, folder)``).
    settings: return_values, packages, docker image, repo and commit ... anything that changes the result.

    Raises ``Unfingerprintable`` if a source does not parse or a setting cannot be fingerprinted.
    """
    h = new_hasher()
    h.update(_K_CODE)
    write_text(h, normalize_source(source))
    # Helpers keep their decorators (an @lru_cache is part of what a helper does) and their order is
    # free: they are all defined before the component runs.
    helpers = sorted(normalize_source(s, drop_decorators=False) for s in helper_sources)
    write_count(h, b"", len(helpers))
    for helper in helpers:
        write_text(h, helper)
    modules = sorted((local_modules or {}).items())
    write_count(h, b"", len(modules))
    for name, text in modules:
        write_text(h, name)
        write_text(h, text)
    write_value(h, settings)
    return h.hexdigest()


def args_key(kwargs: dict) -> str:
    """The arguments half of a cache key: a fingerprint of the call's keyword arguments, in any order.

    kwargs: the component's arguments by name (a proxy contributes its artifact's content hash).

    Equal to ``fingerprint(kwargs)``; computed per argument so that the error names the argument.
    Raises ``Unfingerprintable`` naming the argument whose value has no stable fingerprint.
    """
    return fingerprint_kwargs(kwargs)


def cache_key(code: str, args: str) -> str:
    """The cache key of a call: its ``code_key`` and ``args_key`` hashed together.

    code, args: the two hex digests; kept apart in the store so several code versions of a step coexist.
    """
    h = new_hasher()
    h.update(_K_CACHE)
    write_text(h, code)
    write_text(h, args)
    return h.hexdigest()


_K_TASK_STEP = b"labpipe.task_step.v1"


def task_step_key(script: dict, params: dict, configuration_overrides: dict, task_overrides: dict, task_type: str) -> str:
    """The cache key of a step that runs a clone of an existing task (``PipelineController.add_step``).

    script: the base task's definition (what it runs). params: its parameters with the step's
    overrides applied ({'Section/name': value}). configuration_overrides, task_overrides: the step's
    (ClearML's meaning). task_type: the base task's type.

    Raises ``Unfingerprintable`` if a value has no stable fingerprint.
    """
    digest = fingerprint({"script": script, "params": params, "config": configuration_overrides,
                          "task_overrides": task_overrides})
    return hash_bytes(_K_TASK_STEP, digest.encode(), json.dumps(task_type).encode())
