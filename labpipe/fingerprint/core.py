"""The walk over a value: ``fingerprint`` and its siblings, the ``_feed`` dispatch, Python's built-in types.

``_feed`` writes one value: exact built-in types through a table (the common case), then, in an order
that matters (see its comments), objects that state their own fingerprint, enum members, stdlib value
types, numpy and pandas values (``arrays``), dataclasses, paths, callables (``callables``) and
subclasses of built-ins. Containers call ``_feed`` again for their members.

Imports point one way: this module imports ``callables`` and ``arrays``, and they never import it. A
callable's closure cells and an array's elements are values again, so those handlers need ``_feed``:
it is passed to them as their ``feed`` argument. That keeps the modules free of an import cycle, and
of a function-level import on a path taken once per nested value.
"""

from __future__ import annotations

import struct
import sys
import types

import xxhash

from labpipe.errors import Unfingerprintable
from labpipe.fingerprint.arrays import feed_numpy, feed_pandas
from labpipe.fingerprint.callables import feed_callable
from labpipe.fingerprint.encoding import (
    NoFingerprint,
    encode_tag,
    enter_container,
    feed_repr,
    short_repr,
    type_name,
    write_atom,
    write_bytes,
    write_count,
    write_text,
)

__all__ = ["fingerprint", "fingerprint_kwargs", "write_value"]

_F64 = struct.Struct("<d")

_T_NONE = encode_tag("none")
_T_TRUE = encode_tag("bool") + b"\x01"
_T_FALSE = encode_tag("bool") + b"\x00"
_T_INT = encode_tag("int")
_T_FLOAT = encode_tag("float")
_T_COMPLEX = encode_tag("complex")
_T_STR = encode_tag("str")
_T_BYTES = encode_tag("bytes")
_T_BYTEARRAY = encode_tag("bytearray")
_T_MEMORYVIEW = encode_tag("memoryview")
_T_LIST = encode_tag("list")
_T_TUPLE = encode_tag("tuple")
_T_DICT = encode_tag("dict")
_T_SET = encode_tag("set")
_T_FROZENSET = encode_tag("frozenset")
_T_RANGE = encode_tag("range")
_T_SLICE = encode_tag("slice")
_T_ELLIPSIS = encode_tag("ellipsis")
_T_CUSTOM = encode_tag("custom")
_T_ENUM = encode_tag("enum")
_T_PATH = encode_tag("path")
_T_DATACLASS = encode_tag("dataclass")
_T_SUBCLASS = encode_tag("subclass")
_T_DEFAULTDICT = encode_tag("defaultdict")

# Python code sees one NaN (repr 'nan'), but its sign and payload bits depend on how it was produced
# (inf - inf gives a negative NaN on x86), so all float NaNs are written as one.
_NAN = _F64.pack(float("nan"))

# Value types whose repr is canonical (no address, every field shown, exact round trip), matched by
# exact type name so that neither datetime nor decimal has to be imported to recognise them.
_REPR_TYPES = frozenset(
    {
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("uuid", "UUID"),
        ("zoneinfo", "ZoneInfo"),
    }
)


def _digest(value: object, active: set[int]) -> bytes:
    """The 16-byte fingerprint of one value, for containers that sort their members."""
    h = xxhash.xxh3_128()
    _feed(h, value, active)
    return h.digest()


def fingerprint(value: object) -> str:
    """A canonical hex digest of a Python value, equal across processes, runs and hash seeds.

    value: None, bool, int, float, complex, str, bytes, list, tuple, dict, set, numpy arrays and scalars,
        pandas DataFrame/Series/Index, pathlib paths, dataclass instances, enum members, functions,
        classes, a few stdlib value types (datetime, Decimal, UUID ...), any nesting of these, and any
        object whose class defines ``__labpipe_fingerprint__() -> str``.

    Raises ``Unfingerprintable`` (naming the type and where it sits) for anything else: an arbitrary
    object, a file handle, a generator, a lock, a self-referencing container. Why: a key we cannot make
    canonical would either never hit or, worse, hit for a different value; the caller does not cache.
    """
    h = xxhash.xxh3_128()
    write_value(h, value)
    return h.hexdigest()


def write_value(h: xxhash.xxh3_128, value: object) -> None:
    """Write the encoding of ``value`` into an open hasher ``h``; ``fingerprint`` is its digest alone.

    For keys that frame several parts in one hasher (``hashing.code_key``). Raises ``Unfingerprintable``
    as ``fingerprint`` does.
    """
    try:
        _feed(h, value, set())
    except NoFingerprint as exc:
        raise Unfingerprintable(exc.message()) from None
    except RecursionError:
        raise Unfingerprintable(
            f"value of type {type_name(type(value))} is nested too deeply to fingerprint; "
            "a call that receives it will not be cached."
        ) from None


def fingerprint_kwargs(kwargs: dict) -> str:
    """``fingerprint(kwargs)`` for a call's keyword arguments, computed per argument to name a bad one.

    kwargs: the arguments by name, in any order.

    Raises ``Unfingerprintable`` naming the argument whose value has no stable fingerprint.
    """
    pairs = []
    for name, value in kwargs.items():
        try:
            pairs.append((_digest(name, set()), _digest(value, set())))
        except (NoFingerprint, RecursionError) as exc:
            message = (
                f"argument {name!r} of type {type_name(type(value))} has no stable fingerprint; "
                "this call is not cached"
            )
            if isinstance(exc, NoFingerprint):
                inner = f"{exc.type_name}{' at ' + exc.where() if exc.path else ''}"
                message += f" ({inner}: {exc.reason})" if exc.path else f" ({exc.reason})"
            else:
                message += " (nested too deeply)"
            raise Unfingerprintable(message) from None
    # Exactly what _feed_dict writes for a dict, so the result equals fingerprint(kwargs).
    h = xxhash.xxh3_128()
    _feed_sorted_pairs(h, _T_DICT, pairs)
    return h.hexdigest()


def _feed(h: xxhash.xxh3_128, value: object, active: set[int]) -> None:
    """Write one value's encoding into ``h``; the order of checks below matters (see comments)."""
    cls = type(value)
    # Exact built-in types first: the common case, and no subclass can sneak in with a changed meaning.
    handler = _EXACT.get(cls)
    if handler is not None:
        handler(h, value, active)
        return

    # Looked up on the class, not the instance: a lazy proxy's __getattr__ must not resolve its value.
    if getattr(cls, "__labpipe_fingerprint__", None) is not None:
        _feed_custom(h, value)
        return

    # Before int and str: an IntEnum/StrEnum member is an int/str subclass, but its identity is its name.
    enum = sys.modules.get("enum")
    if enum is not None and isinstance(value, enum.Enum):
        h.update(_T_ENUM)
        write_text(h, type_name(cls))
        write_text(h, value.name)
        return

    if (cls.__module__, cls.__qualname__) in _REPR_TYPES:
        feed_repr(h, value, cls.__qualname__)
        return

    # Before the built-in subclasses: numpy.float64 is a float and numpy.str_ a str, but carry a dtype.
    np = sys.modules.get("numpy")
    if np is not None and feed_numpy(h, value, np, active, _feed):
        return
    pd = sys.modules.get("pandas")
    if pd is not None and np is not None and feed_pandas(h, value, pd, np, active, _feed):
        return

    if hasattr(cls, "__dataclass_fields__") and not isinstance(value, type):
        _feed_dataclass(h, value, active)
        return

    pathlib = sys.modules.get("pathlib")
    if pathlib is not None and isinstance(value, pathlib.PurePath):
        # A path is a name: its string. (Its file's content is not read: pass the data, not the path,
        # when the content should count.)
        write_atom(h, _T_PATH, str(value).encode("utf-8", "surrogateescape"))
        return

    if feed_callable(h, value, active, _feed):
        return

    for base in _SUBCLASSABLE:
        if isinstance(value, base):
            _feed_subclass(h, value, base, active)
            return

    raise NoFingerprint(value, _why_not(value))


def _why_not(value: object) -> str:
    if isinstance(value, types.GeneratorType | types.CoroutineType | types.AsyncGeneratorType):
        return "a generator's output depends on how far it was consumed"
    io = sys.modules.get("io")
    if io is not None and isinstance(value, io.IOBase):
        return "a file handle is a place, not a value"
    if isinstance(value, types.ModuleType):
        return "a module is not a value"
    return "it is not plain data and its class defines no __labpipe_fingerprint__()"


# ----------------------------------------------------------------------------- built-in types


def _feed_none(h, value, active):
    h.update(_T_NONE)


def _feed_bool(h, value, active):
    # A tag of its own: True == 1 == 1.0 in Python, but a function may branch on the type.
    h.update(_T_TRUE if value else _T_FALSE)


def _feed_int(h, value, active):
    # Two's-complement bytes, not str(): str() of a huge int hits the int-to-str digit limit.
    write_atom(h, _T_INT, value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True))


def _feed_float(h, value, active):
    # The exact IEEE bits (so 0.1 + 0.2 differs from 0.3, and -0.0 from 0.0), under a float tag (so 1.0
    # differs from 1).
    write_atom(h, _T_FLOAT, _NAN if value != value else _F64.pack(value))


def _feed_complex(h, value, active):
    real, imag = value.real, value.imag
    write_atom(
        h,
        _T_COMPLEX,
        (_NAN if real != real else _F64.pack(real)) + (_NAN if imag != imag else _F64.pack(imag)),
    )


def _feed_str(h, value, active):
    # surrogatepass: a str with lone surrogates (from os.fsdecode) is still a value.
    write_atom(h, _T_STR, value.encode("utf-8", "surrogatepass"))


def _feed_bytes(h, value, active):
    write_bytes(h, _T_BYTES, value)


def _feed_bytearray(h, value, active):
    write_bytes(h, _T_BYTEARRAY, value)


def _feed_memoryview(h, value, active):
    # Its format and shape are part of its value: the same bytes as int32 or as float32 differ.
    data = value.tobytes()
    h.update(_T_MEMORYVIEW)
    write_text(h, value.format)
    _feed(h, tuple(value.shape or ()), active)
    write_atom(h, b"", data)


def _feed_items(h, tag: bytes, value, active) -> None:
    """A sequence keeps its order; list and tuple have different tags because code can tell them apart."""
    key = enter_container(value, active)
    try:
        write_count(h, tag, len(value))
        for i, item in enumerate(value):
            try:
                _feed(h, item, active)
            except NoFingerprint as exc:
                exc.path.append(f"[{i}]")
                raise
    finally:
        active.discard(key)


def _feed_list(h, value, active):
    _feed_items(h, _T_LIST, value, active)


def _feed_tuple(h, value, active):
    _feed_items(h, _T_TUPLE, value, active)


def _feed_sorted_pairs(h, tag: bytes, pairs: list[tuple[bytes, bytes]]) -> None:
    # Sorting by the key's fingerprint makes insertion order irrelevant and needs no ordering between
    # keys of different types (which Python's sorted() would refuse: 1 < "a").
    pairs.sort()
    write_count(h, tag, len(pairs))
    for key_digest, value_digest in pairs:
        h.update(key_digest + value_digest)


def _feed_dict(h, value, active):
    key = enter_container(value, active)
    try:
        _feed_sorted_pairs(h, _T_DICT, _dict_pairs(value, active))
    finally:
        active.discard(key)


def _dict_pairs(value, active) -> list[tuple[bytes, bytes]]:
    pairs = []
    for k, v in value.items():
        try:
            key_digest = _digest(k, active)
        except NoFingerprint as exc:
            exc.path.append(" (a dict key)")
            raise
        try:
            value_digest = _digest(v, active)
        except NoFingerprint as exc:
            exc.path.append(f"[{short_repr(k)}]")
            raise
        pairs.append((key_digest, value_digest))
    return pairs


def _feed_unordered(h, tag: bytes, value, active) -> None:
    # Iteration order of a set of str changes with PYTHONHASHSEED, so members are sorted by fingerprint.
    key = enter_container(value, active)
    try:
        digests = []
        for item in value:
            try:
                digests.append(_digest(item, active))
            except NoFingerprint as exc:
                exc.path.append(" (a set member)")
                raise
        digests.sort()
        write_count(h, tag, len(digests))
        h.update(b"".join(digests))
    finally:
        active.discard(key)


def _feed_set(h, value, active):
    _feed_unordered(h, _T_SET, value, active)


def _feed_frozenset(h, value, active):
    _feed_unordered(h, _T_FROZENSET, value, active)


def _feed_range(h, value, active):
    h.update(_T_RANGE)
    for n in (value.start, value.stop, value.step):
        _feed_int(h, n, active)


def _feed_slice(h, value, active):
    h.update(_T_SLICE)
    for part in (value.start, value.stop, value.step):
        _feed(h, part, active)


def _feed_ellipsis(h, value, active):
    h.update(_T_ELLIPSIS)


_EXACT = {
    type(None): _feed_none,
    bool: _feed_bool,
    int: _feed_int,
    float: _feed_float,
    complex: _feed_complex,
    str: _feed_str,
    bytes: _feed_bytes,
    bytearray: _feed_bytearray,
    memoryview: _feed_memoryview,
    list: _feed_list,
    tuple: _feed_tuple,
    dict: _feed_dict,
    set: _feed_set,
    frozenset: _feed_frozenset,
    range: _feed_range,
    slice: _feed_slice,
    type(...): _feed_ellipsis,
}

# Checked with isinstance after everything else; bool is absent because it cannot be subclassed.
_SUBCLASSABLE = (int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)


def _feed_subclass(h, value, base: type, active) -> None:
    """A subclass of a built-in (namedtuple, Counter, a str subclass): its class, base value and attributes."""
    h.update(_T_SUBCLASS)
    write_text(h, type_name(type(value)))
    _EXACT[base](h, value, active)
    collections = sys.modules.get("collections")
    if collections is not None and isinstance(value, collections.defaultdict):
        # What a missing key turns into changes what the function computes.
        h.update(_T_DEFAULTDICT)
        _feed(h, value.default_factory, active)
    # Instance attributes of the subclass can change its behaviour as much as its contents do.
    attrs = getattr(value, "__dict__", None)
    _feed(h, dict(attrs) if attrs else None, active)


# ---------------------------------------------------------------------------------- other values


def _feed_custom(h, value) -> None:
    """An object that states its own fingerprint (pipeline proxies: their artifact's content hash).

    The class name is deliberately not mixed in: a proxy must hash the same whichever proxy class carries
    it, so the returned string has to identify the value completely on its own.
    """
    try:
        result = value.__labpipe_fingerprint__()
    except Unfingerprintable as exc:
        raise NoFingerprint(value, str(exc)) from None
    if not isinstance(result, str):
        raise NoFingerprint(value, f"its __labpipe_fingerprint__() returned {type(result).__name__}, not str")
    h.update(_T_CUSTOM)
    write_text(h, result)


def _feed_dataclass(h, value, active) -> None:
    # Class name plus every field (also init=False ones: they are part of the state the function sees).
    key = enter_container(value, active)
    try:
        h.update(_T_DATACLASS)
        write_text(h, type_name(type(value)))
        fields = [name for name, f in type(value).__dataclass_fields__.items() if _is_field(f)]
        write_count(h, b"", len(fields))
        for name in fields:
            write_text(h, name)
            try:
                _feed(h, getattr(value, name, _MISSING), active)
            except NoFingerprint as exc:
                exc.path.append(f".{name}")
                raise
    finally:
        active.discard(key)


class _Missing:
    """Stands for a dataclass field that was never set (init=False without a default)."""

    def __labpipe_fingerprint__(self) -> str:
        return "labpipe:missing-field"


_MISSING = _Missing()


def _is_field(f) -> bool:
    # ClassVar and InitVar pseudo-fields are listed in __dataclass_fields__ but are not instance state.
    return getattr(f, "_field_type", None) is None or getattr(f._field_type, "name", "_FIELD") == "_FIELD"
