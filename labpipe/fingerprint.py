"""Typed canonical fingerprints of Python values: what a call's arguments are, as a cache sees them.

Why typed fingerprints and not pickle bytes: two pickles of equal objects can differ (set and dict
order under hash randomisation, memo references, protocol versions), so a pickle-based key misses when it
should hit; worse, a ``repr`` can carry a memory address and hit when it should miss. So every value is
walked here and encoded with its type, and anything we cannot encode canonically raises
``Unfingerprintable``: the caller then does not cache the call, which is slow but never wrong.

A fingerprint is the xxh3-128 digest of that encoding. ``hashing`` builds the cache keys from it; every
golden value in ``tests/test_hashing.py`` pins this encoding: changing it silently invalidates every
user's cache, so a change must be deliberate (bump the ``v1`` in the key tags).

This module sits at the bottom layer: stdlib, xxhash and ``labpipe.source`` (functions and classes count
by their normalised source) only. numpy and pandas are looked up in ``sys.modules`` (a value of their
types can only exist if they were imported), never imported here.
"""

from __future__ import annotations

import struct
import sys
import types

import xxhash

from labpipe.errors import Unfingerprintable
from labpipe.source import is_library_code, normalize_source

__all__ = ["encode_tag", "fingerprint", "fingerprint_kwargs", "write_count", "write_text", "write_value"]

# ------------------------------------------------------------------------------------ value encoding
#
# Every value is written as a tag (its kind, length-prefixed) followed by a payload that is itself
# length-prefixed or made of self-delimiting children, so no two different values share an encoding:
# [1, 23] and [12, 3] differ, "ab" + "c" differs from "a" + "bc".

_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_C128 = struct.Struct("<dd")


def encode_tag(name: str) -> bytes:
    """The bytes that open an encoding of kind ``name``: the name, length-prefixed."""
    data = name.encode()
    return _U64.pack(len(data)) + data


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
_T_REPR = encode_tag("repr")
_T_PATH = encode_tag("path")
_T_DATACLASS = encode_tag("dataclass")
_T_SUBCLASS = encode_tag("subclass")
_T_DEFAULTDICT = encode_tag("defaultdict")
_T_FUNCTION = encode_tag("function")
_T_FUNCTION_CYCLE = encode_tag("function-cycle")
_T_CODE = encode_tag("code")
_T_CELL = encode_tag("cell")
_T_EMPTY_CELL = encode_tag("empty-cell")
_T_BUILTIN = encode_tag("builtin-function")
_T_DESCRIPTOR = encode_tag("method-descriptor")
_T_METHOD = encode_tag("method")
_T_PARTIAL = encode_tag("partial")
_T_CLASS = encode_tag("class")
_T_NDARRAY = encode_tag("numpy.ndarray")
_T_NDSUBCLASS = encode_tag("numpy.ndarray-subclass")
_T_NPSCALAR = encode_tag("numpy.scalar")
_T_NPDTYPE = encode_tag("numpy.dtype")
_T_NPFUNC = encode_tag("numpy.function")
_T_DATAFRAME = encode_tag("pandas.DataFrame")
_T_SERIES = encode_tag("pandas.Series")
_T_INDEX = encode_tag("pandas.Index")
_T_PDARRAY = encode_tag("pandas.array")
_T_PDVALUES = encode_tag("pandas.values")

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


class _NoFingerprint(Exception):
    """Internal: a value deep inside the one being fingerprinted cannot be; ``path`` says where."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(reason)
        self.type_name = _type_name(type(value))
        self.reason = reason
        self.path: list[str] = []  # innermost first: each container appends its own step on the way out

    def where(self) -> str:
        return "".join(reversed(self.path))

    def message(self) -> str:
        where = f" at {self.where()}" if self.path else ""
        return (
            f"value of type {self.type_name}{where} has no stable fingerprint ({self.reason}); "
            "a call that receives it will not be cached. Pass plain data (numbers, strings, lists, dicts, "
            "numpy, pandas, dataclasses), or give the class a __labpipe_fingerprint__() method."
        )


def _type_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    return name if module in (None, "builtins") else f"{module}.{name}"


def _atom(h: xxhash.xxh3_128, tag: bytes, payload: bytes) -> None:
    h.update(tag + _U64.pack(len(payload)) + payload)


def write_text(h: xxhash.xxh3_128, text: str) -> None:
    """Write ``text`` into ``h`` as length-prefixed UTF-8 (lone surrogates kept, see ``_feed_str``)."""
    data = text.encode("utf-8", "surrogatepass")
    h.update(_U64.pack(len(data)))
    h.update(data)


def write_count(h: xxhash.xxh3_128, tag: bytes, n: int) -> None:
    """Write ``tag`` and the number of self-delimiting items that follow it."""
    h.update(tag + _U64.pack(n))


def _digest(value: object, active: set[int]) -> bytes:
    """The 16-byte fingerprint of one value, for containers that sort their members."""
    h = xxhash.xxh3_128()
    _feed(h, value, active)
    return h.digest()


def _enter(value: object, active: set[int]) -> int:
    # A container that is already being walked further up contains itself: there is no finite encoding.
    key = id(value)
    if key in active:
        raise _NoFingerprint(value, "it contains itself")
    active.add(key)
    return key


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
    except _NoFingerprint as exc:
        raise Unfingerprintable(exc.message()) from None
    except RecursionError:
        raise Unfingerprintable(
            f"value of type {_type_name(type(value))} is nested too deeply to fingerprint; "
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
        except (_NoFingerprint, RecursionError) as exc:
            message = (
                f"argument {name!r} of type {_type_name(type(value))} has no stable fingerprint; "
                "this call is not cached"
            )
            if isinstance(exc, _NoFingerprint):
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
        write_text(h, _type_name(cls))
        write_text(h, value.name)
        return

    if (cls.__module__, cls.__qualname__) in _REPR_TYPES:
        _feed_repr(h, value, cls.__qualname__)
        return

    # Before the built-in subclasses: numpy.float64 is a float and numpy.str_ a str, but carry a dtype.
    np = sys.modules.get("numpy")
    if np is not None and _feed_numpy(h, value, np, active):
        return
    pd = sys.modules.get("pandas")
    if pd is not None and np is not None and _feed_pandas(h, value, pd, np, active):
        return

    if hasattr(cls, "__dataclass_fields__") and not isinstance(value, type):
        _feed_dataclass(h, value, active)
        return

    pathlib = sys.modules.get("pathlib")
    if pathlib is not None and isinstance(value, pathlib.PurePath):
        # A path is a name: its string. (Its file's content is not read: pass the data, not the path,
        # when the content should count.)
        _atom(h, _T_PATH, str(value).encode("utf-8", "surrogateescape"))
        return

    if _feed_callable(h, value, active):
        return

    for base in _SUBCLASSABLE:
        if isinstance(value, base):
            _feed_subclass(h, value, base, active)
            return

    raise _NoFingerprint(value, _why_not(value))


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
    _atom(h, _T_INT, value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True))


def _feed_float(h, value, active):
    # The exact IEEE bits (so 0.1 + 0.2 differs from 0.3, and -0.0 from 0.0), under a float tag (so 1.0
    # differs from 1).
    _atom(h, _T_FLOAT, _NAN if value != value else _F64.pack(value))


def _feed_complex(h, value, active):
    real, imag = value.real, value.imag
    _atom(
        h,
        _T_COMPLEX,
        (_NAN if real != real else _F64.pack(real)) + (_NAN if imag != imag else _F64.pack(imag)),
    )


def _feed_str(h, value, active):
    # surrogatepass: a str with lone surrogates (from os.fsdecode) is still a value.
    _atom(h, _T_STR, value.encode("utf-8", "surrogatepass"))


def _feed_bytes(h, value, active):
    h.update(_T_BYTES + _U64.pack(len(value)))
    h.update(value)


def _feed_bytearray(h, value, active):
    h.update(_T_BYTEARRAY + _U64.pack(len(value)))
    h.update(value)


def _feed_memoryview(h, value, active):
    # Its format and shape are part of its value: the same bytes as int32 or as float32 differ.
    data = value.tobytes()
    h.update(_T_MEMORYVIEW)
    write_text(h, value.format)
    _feed(h, tuple(value.shape or ()), active)
    _atom(h, b"", data)


def _feed_items(h, tag: bytes, value, active) -> None:
    """A sequence keeps its order; list and tuple have different tags because code can tell them apart."""
    key = _enter(value, active)
    try:
        write_count(h, tag, len(value))
        for i, item in enumerate(value):
            try:
                _feed(h, item, active)
            except _NoFingerprint as exc:
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
    key = _enter(value, active)
    try:
        _feed_sorted_pairs(h, _T_DICT, _dict_pairs(value, active))
    finally:
        active.discard(key)


def _dict_pairs(value, active) -> list[tuple[bytes, bytes]]:
    pairs = []
    for k, v in value.items():
        try:
            key_digest = _digest(k, active)
        except _NoFingerprint as exc:
            exc.path.append(" (a dict key)")
            raise
        try:
            value_digest = _digest(v, active)
        except _NoFingerprint as exc:
            exc.path.append(f"[{_short_repr(k)}]")
            raise
        pairs.append((key_digest, value_digest))
    return pairs


def _short_repr(value: object) -> str:
    text = (
        repr(value) if isinstance(value, (str, int, float, bool, bytes, type(None))) else type(value).__name__
    )
    return text if len(text) <= 40 else text[:37] + "..."


def _feed_unordered(h, tag: bytes, value, active) -> None:
    # Iteration order of a set of str changes with PYTHONHASHSEED, so members are sorted by fingerprint.
    key = _enter(value, active)
    try:
        digests = []
        for item in value:
            try:
                digests.append(_digest(item, active))
            except _NoFingerprint as exc:
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
    write_text(h, _type_name(type(value)))
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
        raise _NoFingerprint(value, str(exc)) from None
    if not isinstance(result, str):
        raise _NoFingerprint(
            value, f"its __labpipe_fingerprint__() returned {type(result).__name__}, not str"
        )
    h.update(_T_CUSTOM)
    write_text(h, result)


def _feed_repr(h, value, label: str) -> None:
    text = repr(value)
    if " at 0x" in text:
        # e.g. a datetime whose tzinfo is a class without a repr: the address would change every run.
        raise _NoFingerprint(value, "its repr contains a memory address")
    h.update(_T_REPR)
    write_text(h, label)
    write_text(h, text)


def _feed_dataclass(h, value, active) -> None:
    # Class name plus every field (also init=False ones: they are part of the state the function sees).
    key = _enter(value, active)
    try:
        h.update(_T_DATACLASS)
        write_text(h, _type_name(type(value)))
        fields = [name for name, f in type(value).__dataclass_fields__.items() if _is_field(f)]
        write_count(h, b"", len(fields))
        for name in fields:
            write_text(h, name)
            try:
                _feed(h, getattr(value, name, _MISSING), active)
            except _NoFingerprint as exc:
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


# ------------------------------------------------------------------------------- code as a value


def _feed_callable(h, value, active) -> bool:
    """Functions, methods, partials and classes; False if ``value`` is none of them."""
    if isinstance(value, types.FunctionType):
        _feed_function(h, value, active)
    elif isinstance(value, types.MethodType):
        # A bound method: what it does depends on the object it is bound to.
        h.update(_T_METHOD)
        _feed(h, value.__self__, active)
        _feed(h, value.__func__, active)
    elif isinstance(value, types.BuiltinFunctionType):
        h.update(_T_BUILTIN)
        write_text(h, str(value.__module__))
        write_text(h, value.__qualname__)
        bound = value.__self__
        _feed(h, None if bound is None or isinstance(bound, types.ModuleType) else bound, active)
    elif isinstance(
        value, types.MethodDescriptorType | types.WrapperDescriptorType | types.ClassMethodDescriptorType
    ):
        h.update(_T_DESCRIPTOR)
        write_text(h, _type_name(value.__objclass__))
        write_text(h, value.__name__)
    elif _is_partial(value):
        h.update(_T_PARTIAL)
        _feed(h, value.func, active)
        _feed(h, value.args, active)
        _feed(h, value.keywords, active)
    elif isinstance(value, type):
        _feed_class(h, value)
    else:
        return False
    return True


def _is_partial(value) -> bool:
    functools = sys.modules.get("functools")
    return functools is not None and isinstance(value, functools.partial)


def _feed_function(h, fn: types.FunctionType, active) -> None:
    """A function by module + qualname + what it does: its normalised source, or else its bytecode.

    Its closure's values count too: two closures made by one factory share their source but not their
    behaviour. Library functions (stdlib, site-packages) count by name: their version is a setting.
    """
    key = id(fn)
    if key in active:
        # A recursive closure refers to itself: that is a name, not an infinite value.
        h.update(_T_FUNCTION_CYCLE)
        write_text(h, fn.__qualname__)
        return
    active.add(key)
    try:
        h.update(_T_FUNCTION)
        write_text(h, str(fn.__module__))
        write_text(h, fn.__qualname__)
        if is_library_code(fn):
            h.update(b"\x00")
        else:
            source = _function_source(fn)
            if source is not None:
                h.update(b"\x01")
                write_text(h, source)
            else:
                h.update(b"\x02")
                _feed_code(h, fn.__code__, active)
        cells = fn.__closure__ or ()
        write_count(h, _T_CELL, len(cells))
        for name, cell in zip(fn.__code__.co_freevars, cells, strict=False):
            try:
                contents = cell.cell_contents
            except ValueError:
                h.update(_T_EMPTY_CELL)
                continue
            try:
                _feed(h, contents, active)
            except _NoFingerprint as exc:
                exc.path.append(f" (closure variable {name!r} of {fn.__qualname__})")
                raise
    finally:
        active.discard(key)


def _function_source(fn: types.FunctionType) -> str | None:
    # A lambda's "source" is the whole line it sits on, shared by every lambda on that line, so its
    # bytecode is the only thing that tells two of them apart.
    if fn.__name__ == "<lambda>":
        return None
    import inspect

    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    try:
        return normalize_source(source, drop_decorators=False)
    except Unfingerprintable:
        return None


def _feed_code(h, code: types.CodeType, active) -> None:
    # Bytecode without line numbers: stable across processes for one Python version (an upgrade misses).
    h.update(_T_CODE)
    _atom(h, b"", code.co_code)
    for n in (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags):
        _feed_int(h, n, active)
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        _feed(h, names, active)
    write_count(h, b"", len(code.co_consts))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const, active)
        else:
            _feed(h, const, active)


def _feed_class(h, cls: type) -> None:
    """A class by name, plus its normalised source when it is the project's own code."""
    h.update(_T_CLASS)
    write_text(h, _type_name(cls))
    if is_library_code(cls):
        h.update(b"\x00")
        return
    import inspect

    try:
        source = normalize_source(inspect.getsource(cls), drop_decorators=False)
    except (OSError, TypeError, Unfingerprintable):
        raise _NoFingerprint(cls, f"the source of class {cls.__qualname__} cannot be read") from None
    h.update(b"\x01")
    write_text(h, source)


# --------------------------------------------------------------------------------------- numpy


def _feed_numpy(h, value, np, active) -> bool:
    """numpy arrays, scalars, dtypes and functions; False if ``value`` is none of them."""
    if isinstance(value, np.ndarray):
        _feed_ndarray(h, value, np, active)
    elif isinstance(value, np.generic):
        dtype = value.dtype
        h.update(_T_NPSCALAR)
        write_text(h, _dtype_text(dtype))
        if _dtype_holds_objects(dtype):
            _feed(h, value.item(), active)
        else:
            # dtype + raw bytes: np.float32(1) and np.float64(1) are different values to numpy code.
            _atom(h, b"", value.tobytes())
    elif isinstance(value, np.dtype):
        h.update(_T_NPDTYPE)
        write_text(h, _dtype_text(value))
    elif isinstance(value, np.ufunc) or type(value).__name__ == "_ArrayFunctionDispatcher":
        # numpy's own functions: library code, identified by name (np.log, np.sum).
        h.update(_T_NPFUNC)
        write_text(h, f"{getattr(value, '__module__', 'numpy')}.{value.__name__}")
    else:
        return False
    return True


def _dtype_text(dtype) -> str:
    # dtype.str keeps byte order, width and datetime unit ('<M8[ns]'); a structured dtype needs its
    # field names and layout too, which only descr lists.
    return dtype.str if dtype.fields is None else repr(dtype.descr)


def _dtype_holds_objects(dtype) -> bool:
    # Object arrays hold pointers, and numpy 2's StringDType ('T') points into an arena: their raw bytes
    # are addresses, so such arrays are walked element by element.
    return dtype.hasobject or dtype.kind == "T"


def _feed_ndarray(h, arr, np, active) -> None:
    if type(arr) is not np.ndarray:
        h.update(_T_NDSUBCLASS)
        write_text(h, _type_name(type(arr)))
        ma = sys.modules.get("numpy.ma")
        if ma is not None and isinstance(arr, ma.MaskedArray):
            # The mask is part of a masked array's value; the data under it is kept (conservative).
            _feed_ndarray(h, ma.getmaskarray(arr), np, active)
            _feed(h, arr.fill_value, active)
            arr = arr.data
        else:
            arr = arr.view(np.ndarray)
    h.update(_T_NDARRAY)
    write_text(h, _dtype_text(arr.dtype))
    _feed(h, tuple(int(n) for n in arr.shape), active)
    if _dtype_holds_objects(arr.dtype):
        key = _enter(arr, active)
        try:
            for i, item in enumerate(arr.ravel(order="C")):
                try:
                    _feed(h, item, active)
                except _NoFingerprint as exc:
                    exc.path.append(f"[flat index {i}]")
                    raise
        finally:
            active.discard(key)
        return
    # The bytes of a C-contiguous copy: a transposed or sliced view hashes like the array it shows.
    # (No copy when it already is contiguous.) Viewed as uint8 because some dtypes (datetime64) refuse
    # to export a buffer as themselves.
    data = np.ascontiguousarray(arr).reshape(-1)
    try:
        h.update(data.view(np.uint8))
    except (TypeError, ValueError, BufferError):
        h.update(data.tobytes())


# -------------------------------------------------------------------------------------- pandas


def _feed_pandas(h, value, pd, np, active) -> bool:
    """pandas DataFrame, Series, Index, extension arrays and scalars; False if ``value`` is none of them."""
    if isinstance(value, pd.DataFrame):
        key = _enter(value, active)
        try:
            h.update(_T_DATAFRAME)
            _feed_index(h, value.columns, pd, np, active)
            _feed_index(h, value.index, pd, np, active)
            write_count(h, b"", value.shape[1])
            for i in range(value.shape[1]):
                column = value.iloc[:, i]  # by position: column labels may repeat
                try:
                    _feed_pandas_values(h, column, pd, np, active)
                except _NoFingerprint as exc:
                    exc.path.append(f"[column {_short_repr(column.name)}]")
                    raise
        finally:
            active.discard(key)
    elif isinstance(value, pd.Series):
        key = _enter(value, active)
        try:
            h.update(_T_SERIES)
            _feed(h, value.name, active)
            _feed_index(h, value.index, pd, np, active)
            _feed_pandas_values(h, value, pd, np, active)
        finally:
            active.discard(key)
    elif isinstance(value, pd.Index):
        _feed_index(h, value, pd, np, active)
    elif isinstance(value, pd.api.extensions.ExtensionArray):
        h.update(_T_PDARRAY)
        _feed_pandas_values(h, pd.Series(value, copy=False), pd, np, active)
    elif isinstance(value, (pd.Timestamp, pd.Timedelta, pd.Period, pd.Interval, type(pd.NaT), type(pd.NA))):
        # Stable labels, not the classes' module paths, which pandas moves between versions.
        _feed_repr(h, value, f"pandas.{type(value).__name__}")
    else:
        return False
    return True


def _feed_index(h, index, pd, np, active) -> None:
    # Class name too: a RangeIndex and an Index of the same ints slice differently (loc vs iloc).
    h.update(_T_INDEX)
    write_text(h, type(index).__name__)
    _feed(h, list(index.names), active)
    if isinstance(index, pd.RangeIndex):
        _feed(h, range(index.start, index.stop, index.step), active)
    elif isinstance(index, pd.MultiIndex):
        write_count(h, b"", index.nlevels)
        for level in range(index.nlevels):
            _feed_pandas_values(h, index.get_level_values(level), pd, np, active)
    else:
        _feed_pandas_values(h, index, pd, np, active)


def _feed_pandas_values(h, obj, pd, np, active) -> None:
    """The dtype and values of a Series or Index (its index and name are written by the caller)."""
    dtype = obj.dtype
    h.update(_T_PDVALUES)
    write_text(h, str(dtype))
    if isinstance(dtype, np.dtype):
        _feed_ndarray(h, obj.to_numpy(), np, active)  # a view, not a copy, for numpy dtypes
    elif isinstance(dtype, pd.CategoricalDtype):
        categorical = obj.array
        _feed_index(h, categorical.categories, pd, np, active)
        _feed_bool(h, bool(categorical.ordered), active)
        _feed_ndarray(h, categorical.codes, np, active)
    else:
        # Extension dtypes (nullable ints, strings, tz-aware datetimes, periods, arrow) keep internal
        # buffers whose layout is theirs to change; the Python scalars they hand out are the value.
        _feed_ndarray(h, obj.to_numpy(dtype=object), np, active)
