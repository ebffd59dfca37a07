"""The framing every fingerprint is written in, and the error a value that cannot be written raises.

Every value is written as a tag (its kind, length-prefixed) followed by a payload that is itself
length-prefixed or made of self-delimiting children, so no two different values share an encoding:
[1, 23] and [12, 3] differ, "ab" + "c" differs from "a" + "bc". The functions here write those frames;
``core``, ``callables`` and ``arrays`` decide what goes in them. None of them walks into a value, so this
module needs no other part of the package: it is the bottom of ``labpipe.fingerprint``.

``encode_tag``, ``write_text`` and ``write_count`` are also exported by the package (``hashing`` frames its
keys with them); the other names here serve ``core``, ``callables`` and ``arrays`` only, and code outside
the package imports from ``labpipe.fingerprint``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import xxhash

__all__ = [
    "Feed",
    "NoFingerprint",
    "encode_tag",
    "enter_container",
    "feed_repr",
    "short_repr",
    "type_name",
    "write_atom",
    "write_bytes",
    "write_count",
    "write_text",
]

_U64 = struct.Struct("<Q")

# The signature of ``core._feed``: write one value into a hasher, ``active`` holding the ids of the
# containers being walked (see ``enter_container``). ``callables`` and ``arrays`` receive it as an argument.
Feed = Callable[[xxhash.xxh3_128, object, set[int]], None]


def encode_tag(name: str) -> bytes:
    """The bytes that open an encoding of kind ``name``: the name, length-prefixed."""
    data = name.encode()
    return _U64.pack(len(data)) + data


_T_REPR = encode_tag("repr")


def write_atom(h: xxhash.xxh3_128, tag: bytes, payload: bytes) -> None:
    """Write ``tag`` and a short length-prefixed ``payload`` (one update: the hot path for ints, floats, str)."""
    h.update(tag + _U64.pack(len(payload)) + payload)


def write_bytes(h: xxhash.xxh3_128, tag: bytes, data: bytes | bytearray) -> None:
    """Write ``tag`` and length-prefixed ``data`` as ``write_atom`` does, without copying ``data`` first.

    Why a second writer: ``write_atom`` joins its parts into one bytes object, which for a large bytes
    value would copy all of it; the same frame fed in two updates hashes to the same digest.
    """
    h.update(tag + _U64.pack(len(data)))
    h.update(data)


def write_text(h: xxhash.xxh3_128, text: str) -> None:
    """Write ``text`` into ``h`` as length-prefixed UTF-8 (lone surrogates kept, see ``core._feed_str``)."""
    data = text.encode("utf-8", "surrogatepass")
    h.update(_U64.pack(len(data)))
    h.update(data)


def write_count(h: xxhash.xxh3_128, tag: bytes, n: int) -> None:
    """Write ``tag`` and the number of self-delimiting items that follow it."""
    h.update(tag + _U64.pack(n))


def feed_repr(h: xxhash.xxh3_128, value: object, label: str) -> None:
    """A value written as its repr: stdlib value types (``core``) and pandas scalars (``arrays``)."""
    text = repr(value)
    if " at 0x" in text:
        # e.g. a datetime whose tzinfo is a class without a repr: the address would change every run.
        raise NoFingerprint(value, "its repr contains a memory address")
    h.update(_T_REPR)
    write_text(h, label)
    write_text(h, text)


# ------------------------------------------------------------------------------- values we cannot write


class NoFingerprint(Exception):
    """A value deep inside the one being fingerprinted cannot be; ``path`` says where.

    Control flow inside this package, never seen outside it: containers add their step to ``path`` on the
    way out, and ``core``'s entry points turn it into ``labpipe.errors.Unfingerprintable`` with
    ``message()``. Why not that error itself: this one is half-made (it gathers its ``path`` as it
    travels out through the containers) and becomes the user's error once, complete, at the entry point.
    """

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(reason)
        self.type_name = type_name(type(value))
        self.reason = reason
        self.path: list[str] = []  # innermost first: each container appends its own step on the way out

    def where(self) -> str:
        """The path from the outer value to the one that failed, e.g. ``['a'][0].field``."""
        return "".join(reversed(self.path))

    def message(self) -> str:
        """What ``Unfingerprintable`` says: the type, where it sits, why, and what to pass instead."""
        where = f" at {self.where()}" if self.path else ""
        return (
            f"value of type {self.type_name}{where} has no stable fingerprint ({self.reason}); "
            "a call that receives it will not be cached. Pass plain data (numbers, strings, lists, dicts, "
            "numpy, pandas, dataclasses), or give the class a __labpipe_fingerprint__() method."
        )


def type_name(cls: type) -> str:
    """A class's qualified name as fingerprints and messages spell it: ``module.Qualname``, bare for builtins."""
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    return name if module in (None, "builtins") else f"{module}.{name}"


def short_repr(value: object) -> str:
    """A dict key as a path step shows it: the repr of a plain value, else its type's name; 40 characters at most."""
    text = (
        repr(value) if isinstance(value, (str, int, float, bool, bytes, type(None))) else type(value).__name__
    )
    return text if len(text) <= 40 else text[:37] + "..."


def enter_container(value: object, active: set[int]) -> int:
    """Mark ``value`` as being walked (the caller discards the returned id from ``active`` when done).

    Raises ``NoFingerprint`` when it is already being walked further up.
    """
    # A container that is already being walked further up contains itself: there is no finite encoding.
    key = id(value)
    if key in active:
        raise NoFingerprint(value, "it contains itself")
    active.add(key)
    return key
