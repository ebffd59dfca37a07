"""Typed canonical fingerprints of Python values: what a call's arguments are, as a cache sees them.

Why typed fingerprints and not pickle bytes: two pickles of equal objects can differ (set and dict
order under hash randomisation, memo references, protocol versions), so a pickle-based key misses when it
should hit; worse, a ``repr`` can carry a memory address and hit when it should miss. So every value is
walked here and encoded with its type, and anything we cannot encode canonically raises
``Unfingerprintable``: the caller then does not cache the call, which is slow but never wrong.

A fingerprint is the xxh3-128 digest of that encoding. ``hashing`` builds the cache keys from it; every
golden value in ``tests/test_hashing.py`` pins this encoding: changing it silently invalidates every
user's cache, so a change must be deliberate (bump the ``v1`` in the key tags).

This package sits at the bottom layer: stdlib, xxhash and ``labpipe.source`` (functions and classes count
by their normalised source) only. numpy and pandas are looked up in ``sys.modules`` (a value of their
types can only exist if they were imported), never imported here.

Its modules, each importing only those listed before it:

- ``encoding``: the framing (tags, length-prefixed atoms and counts) and the internal error a value that
  cannot be encoded raises;
- ``callables``: functions, code objects, classes, partials and methods;
- ``arrays``: numpy and pandas values;
- ``core``: the public entry points, the ``_feed`` dispatch by type, and Python's built-in types. It hands
  ``_feed`` to the ``callables`` and ``arrays`` handlers as an argument, so they need not import it back.

Import the names below from ``labpipe.fingerprint`` (or through ``labpipe.hashing``), not from the modules.
The names the modules share among themselves (``NoFingerprint``, ``write_atom``, ``feed_numpy`` ...) carry no
underscore, since they cross a module line, but are not exported here: they change with the encoding.
"""

from __future__ import annotations

from labpipe.fingerprint.core import fingerprint, fingerprint_kwargs, write_value
from labpipe.fingerprint.encoding import encode_tag, write_count, write_text

__all__ = ["encode_tag", "fingerprint", "fingerprint_kwargs", "write_count", "write_text", "write_value"]
