"""Canonical xxhash fingerprints of code and values: the cache keys and the blob addresses.

A cache key has two parts, stored separately so several code versions coexist (DESIGN.md, "Pipelines"):
``code_key`` (the component's normalised source, its helpers, the project's own modules it imports, and
the settings that change its result) and ``args_key`` (typed fingerprints of its arguments).
``cache_key`` joins them.

Why typed fingerprints and not pickle bytes: two pickles of equal objects can differ (set and dict
order under hash randomisation, memo references, protocol versions), so a pickle-based key misses when it
should hit; worse, a ``repr`` can carry a memory address and hit when it should miss. So every value is
walked here and encoded with its type, and anything we cannot encode canonically raises
``Unfingerprintable``: the caller then does not cache the call, which is slow but never wrong.

Every golden value in ``tests/test_hashing.py`` pins this encoding: changing it silently invalidates
every user's cache, so a change must be deliberate (bump the ``v1`` in the key tags).

This module sits at the bottom layer: stdlib and xxhash only. numpy and pandas are looked up in
``sys.modules`` (a value of their types can only exist if they were imported), never imported here.
"""

from __future__ import annotations

import ast
import os
import struct
import sys
import textwrap
import types
from pathlib import Path

import xxhash

from labpipe.errors import Unfingerprintable

__all__ = [
    "args_key",
    "cache_key",
    "code_key",
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


# -------------------------------------------------------------------------------------------- source


def normalize_source(source: str, *, drop_decorators: bool = True) -> str:
    """Python source reduced to what it does: comments, docstrings, blank lines and layout removed.

    source: a function, class or module's source text; it may be indented (a method, a nested function).
    drop_decorators: remove the decorators of the top-level functions and classes. True for a component's
        own source, whose decorator settings are hashed separately (``code_key(settings=...)``); pass
        False for a whole module or a helper, where a decorator is part of what the code does.

    Why ``ast``: ``ast.unparse(ast.parse(s))`` maps every layout of the same code to one text, while any
    real change (a constant, a name, an operator) shows. Raises ``Unfingerprintable`` if it does not parse.
    """
    tree = _parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                # A def whose only statement was its docstring still needs a body to stay valid code.
                node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    if drop_decorators:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                node.decorator_list = []
    return ast.unparse(tree)


def _parse(source: str) -> ast.Module:
    """Parse possibly-indented source, or raise ``Unfingerprintable`` saying why it cannot be read."""
    try:
        return ast.parse(textwrap.dedent(source))
    except (SyntaxError, ValueError) as exc:
        first = next((line for line in source.splitlines() if line.strip()), "")
        if first[:1] in (" ", "\t"):
            # dedent() gives up when a multi-line string inside the code starts at column 0; wrapping the
            # indented block in `if 1:` parses it as it stands.
            try:
                wrapped = ast.parse("if 1:\n" + source)
                return ast.Module(body=wrapped.body[0].body, type_ignores=[])
            except (SyntaxError, ValueError):
                pass
        where = f" at line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise Unfingerprintable(
            f"source does not parse as Python ({detail}{where}); its code has no stable fingerprint, "
            "so this step is not cached. Check that the function's source file matches the running code."
        ) from None


# ------------------------------------------------------------------------------------ value encoding
#
# Every value is written as a tag (its kind, length-prefixed) followed by a payload that is itself
# length-prefixed or made of self-delimiting children, so no two different values share an encoding:
# [1, 23] and [12, 3] differ, "ab" + "c" differs from "a" + "bc".

_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_C128 = struct.Struct("<dd")


def _tag(name: str) -> bytes:
    data = name.encode()
    return _U64.pack(len(data)) + data


_T_NONE = _tag("none")
_T_TRUE = _tag("bool") + b"\x01"
_T_FALSE = _tag("bool") + b"\x00"
_T_INT = _tag("int")
_T_FLOAT = _tag("float")
_T_COMPLEX = _tag("complex")
_T_STR = _tag("str")
_T_BYTES = _tag("bytes")
_T_BYTEARRAY = _tag("bytearray")
_T_MEMORYVIEW = _tag("memoryview")
_T_LIST = _tag("list")
_T_TUPLE = _tag("tuple")
_T_DICT = _tag("dict")
_T_SET = _tag("set")
_T_FROZENSET = _tag("frozenset")
_T_RANGE = _tag("range")
_T_SLICE = _tag("slice")
_T_ELLIPSIS = _tag("ellipsis")
_T_CUSTOM = _tag("custom")
_T_ENUM = _tag("enum")
_T_REPR = _tag("repr")
_T_PATH = _tag("path")
_T_DATACLASS = _tag("dataclass")
_T_SUBCLASS = _tag("subclass")
_T_DEFAULTDICT = _tag("defaultdict")
_T_FUNCTION = _tag("function")
_T_FUNCTION_CYCLE = _tag("function-cycle")
_T_CODE = _tag("code")
_T_CELL = _tag("cell")
_T_EMPTY_CELL = _tag("empty-cell")
_T_BUILTIN = _tag("builtin-function")
_T_DESCRIPTOR = _tag("method-descriptor")
_T_METHOD = _tag("method")
_T_PARTIAL = _tag("partial")
_T_CLASS = _tag("class")
_T_NDARRAY = _tag("numpy.ndarray")
_T_NDSUBCLASS = _tag("numpy.ndarray-subclass")
_T_NPSCALAR = _tag("numpy.scalar")
_T_NPDTYPE = _tag("numpy.dtype")
_T_NPFUNC = _tag("numpy.function")
_T_DATAFRAME = _tag("pandas.DataFrame")
_T_SERIES = _tag("pandas.Series")
_T_INDEX = _tag("pandas.Index")
_T_PDARRAY = _tag("pandas.array")
_T_PDVALUES = _tag("pandas.values")

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


def _text(h: xxhash.xxh3_128, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    h.update(_U64.pack(len(data)))
    h.update(data)


def _count(h: xxhash.xxh3_128, tag: bytes, n: int) -> None:
    h.update(tag + _U64.pack(n))


def _digest(value: object, active: set[int]) -> bytes:
    """The 16-byte fingerprint of one value, for containers that sort their members."""
    h = new_hasher()
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
    h = new_hasher()
    _feed_top(h, value)
    return h.hexdigest()


def _feed_top(h: xxhash.xxh3_128, value: object) -> None:
    try:
        _feed(h, value, set())
    except _NoFingerprint as exc:
        raise Unfingerprintable(exc.message()) from None
    except RecursionError:
        raise Unfingerprintable(
            f"value of type {_type_name(type(value))} is nested too deeply to fingerprint; "
            "a call that receives it will not be cached."
        ) from None


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
        _text(h, _type_name(cls))
        _text(h, value.name)
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
    _text(h, value.format)
    _feed(h, tuple(value.shape or ()), active)
    _atom(h, b"", data)


def _feed_items(h, tag: bytes, value, active) -> None:
    """A sequence keeps its order; list and tuple have different tags because code can tell them apart."""
    key = _enter(value, active)
    try:
        _count(h, tag, len(value))
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
    _count(h, tag, len(pairs))
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
        _count(h, tag, len(digests))
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
    _text(h, _type_name(type(value)))
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
    _text(h, result)


def _feed_repr(h, value, label: str) -> None:
    text = repr(value)
    if " at 0x" in text:
        # e.g. a datetime whose tzinfo is a class without a repr: the address would change every run.
        raise _NoFingerprint(value, "its repr contains a memory address")
    h.update(_T_REPR)
    _text(h, label)
    _text(h, text)


def _feed_dataclass(h, value, active) -> None:
    # Class name plus every field (also init=False ones: they are part of the state the function sees).
    key = _enter(value, active)
    try:
        h.update(_T_DATACLASS)
        _text(h, _type_name(type(value)))
        fields = [name for name, f in type(value).__dataclass_fields__.items() if _is_field(f)]
        _count(h, b"", len(fields))
        for name in fields:
            _text(h, name)
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
        _text(h, str(value.__module__))
        _text(h, value.__qualname__)
        bound = value.__self__
        _feed(h, None if bound is None or isinstance(bound, types.ModuleType) else bound, active)
    elif isinstance(
        value, types.MethodDescriptorType | types.WrapperDescriptorType | types.ClassMethodDescriptorType
    ):
        h.update(_T_DESCRIPTOR)
        _text(h, _type_name(value.__objclass__))
        _text(h, value.__name__)
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
        _text(h, fn.__qualname__)
        return
    active.add(key)
    try:
        h.update(_T_FUNCTION)
        _text(h, str(fn.__module__))
        _text(h, fn.__qualname__)
        if _is_library(fn):
            h.update(b"\x00")
        else:
            source = _function_source(fn)
            if source is not None:
                h.update(b"\x01")
                _text(h, source)
            else:
                h.update(b"\x02")
                _feed_code(h, fn.__code__, active)
        cells = fn.__closure__ or ()
        _count(h, _T_CELL, len(cells))
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
    _count(h, b"", len(code.co_consts))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const, active)
        else:
            _feed(h, const, active)


def _feed_class(h, cls: type) -> None:
    """A class by name, plus its normalised source when it is the project's own code."""
    h.update(_T_CLASS)
    _text(h, _type_name(cls))
    if _is_library(cls):
        h.update(b"\x00")
        return
    import inspect

    try:
        source = normalize_source(inspect.getsource(cls), drop_decorators=False)
    except (OSError, TypeError, Unfingerprintable):
        raise _NoFingerprint(cls, f"the source of class {cls.__qualname__} cannot be read") from None
    h.update(b"\x01")
    _text(h, source)


def _is_library(obj: object) -> bool:
    """True for code from the standard library, site-packages or a C extension (not the project's).

    Decided by where the module's file is, not by its name: a project file called `code.py` or
    `statistics.py` is the project's code even though the standard library has a module of that name.
    """
    module_name = getattr(obj, "__module__", None)
    if not module_name or module_name == "__main__":
        return False
    module = sys.modules.get(module_name)
    if module is None:
        return False
    file = getattr(module, "__file__", None)
    if file is None:
        # Built-in and frozen modules have no file; a module made at run time (exec) is the user's.
        return module_name in sys.builtin_module_names or _is_frozen(module_name)
    return _is_library_path(Path(file))


def _is_library_path(path: Path) -> bool:
    resolved = path.resolve()
    if {part.lower() for part in resolved.parts} & {"site-packages", "dist-packages"}:
        return True
    return resolved.is_relative_to(_stdlib_dir())


_STDLIB_DIR: list[Path] = []


def _stdlib_dir() -> Path:
    # os.py lives at the top of the standard library (frozen modules keep their __file__ since 3.11).
    if not _STDLIB_DIR:
        _STDLIB_DIR.append(Path(os.__file__).resolve().parent)
    return _STDLIB_DIR[0]


def _is_frozen(name: str) -> bool:
    from importlib.machinery import FrozenImporter

    return FrozenImporter.find_spec(name) is not None


# --------------------------------------------------------------------------------------- numpy


def _feed_numpy(h, value, np, active) -> bool:
    """numpy arrays, scalars, dtypes and functions; False if ``value`` is none of them."""
    if isinstance(value, np.ndarray):
        _feed_ndarray(h, value, np, active)
    elif isinstance(value, np.generic):
        dtype = value.dtype
        h.update(_T_NPSCALAR)
        _text(h, _dtype_text(dtype))
        if _dtype_holds_objects(dtype):
            _feed(h, value.item(), active)
        else:
            # dtype + raw bytes: np.float32(1) and np.float64(1) are different values to numpy code.
            _atom(h, b"", value.tobytes())
    elif isinstance(value, np.dtype):
        h.update(_T_NPDTYPE)
        _text(h, _dtype_text(value))
    elif isinstance(value, np.ufunc) or type(value).__name__ == "_ArrayFunctionDispatcher":
        # numpy's own functions: library code, identified by name (np.log, np.sum).
        h.update(_T_NPFUNC)
        _text(h, f"{getattr(value, '__module__', 'numpy')}.{value.__name__}")
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
        _text(h, _type_name(type(arr)))
        ma = sys.modules.get("numpy.ma")
        if ma is not None and isinstance(arr, ma.MaskedArray):
            # The mask is part of a masked array's value; the data under it is kept (conservative).
            _feed_ndarray(h, ma.getmaskarray(arr), np, active)
            _feed(h, arr.fill_value, active)
            arr = arr.data
        else:
            arr = arr.view(np.ndarray)
    h.update(_T_NDARRAY)
    _text(h, _dtype_text(arr.dtype))
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
            _count(h, b"", value.shape[1])
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
    _text(h, type(index).__name__)
    _feed(h, list(index.names), active)
    if isinstance(index, pd.RangeIndex):
        _feed(h, range(index.start, index.stop, index.step), active)
    elif isinstance(index, pd.MultiIndex):
        _count(h, b"", index.nlevels)
        for level in range(index.nlevels):
            _feed_pandas_values(h, index.get_level_values(level), pd, np, active)
    else:
        _feed_pandas_values(h, index, pd, np, active)


def _feed_pandas_values(h, obj, pd, np, active) -> None:
    """The dtype and values of a Series or Index (its index and name are written by the caller)."""
    dtype = obj.dtype
    h.update(_T_PDVALUES)
    _text(h, str(dtype))
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


# ---------------------------------------------------------------------------------- local modules


def local_module_sources(func_source: str, root: str | os.PathLike) -> dict[str, str]:
    """The project's own modules that a component imports, transitively: {module name: normalised source}.

    func_source: the component's source; its imports (also those inside the function body) are read.
    root: the pipeline script's folder, where a step's local imports resolve (as sys.path[0] does).

    Modules are found by looking at files (root/name.py, root/pkg/__init__.py, root/pkg/sub.py), never by
    importing them. Standard-library names, modules that are not files under root (numpy) and files inside
    a site-packages folder do not count: their version is a setting, not the project's code. Why at all:
    editing a helper module beside the pipeline script must invalidate the steps that use it.
    """
    root_path = Path(root).resolve()
    found: dict[str, str] = {}
    pending = list(_imported_modules(_parse(func_source), package=None))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.partition(".")[0]
        if top in sys.builtin_module_names or _is_frozen(top):
            continue  # these always win over a same-named file beside the script
        # Any other standard-library name (os, json) simply has no file under root; a project file
        # that shadows one (statistics.py) is what the step imports, so it counts.
        path = _module_file(root_path, name)
        if path is None:
            continue
        text = _read_source(path)
        try:
            tree = _parse(text)
        except Unfingerprintable:
            # A file that does not parse still has content; raw text keeps its edits visible to the key.
            found[name] = text
            continue
        found[name] = normalize_source(text, drop_decorators=False)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        pending.extend(_imported_modules(tree, package))
    return dict(sorted(found.items()))


def _imported_modules(tree: ast.AST, package: str | None):
    """Every module name an import statement in ``tree`` may load, parents included (a.b.c loads a, a.b).

    package: the importing module's package, for relative imports; None for a standalone script, where a
    relative import cannot work and is skipped.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    continue
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            yield from _with_parents(module)
            for alias in node.names:
                if alias.name != "*":
                    yield f"{module}.{alias.name}"  # `from pkg import sub` may name a submodule


def _with_parents(name: str):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    # A package directory wins over a same-named module file, as in Python's own path finder.
    for candidate in (base / "__init__.py", base.parent / f"{base.name}.py"):
        if candidate.is_file():
            return None if _is_library_path(candidate) else candidate
    return None


def _read_source(path: Path) -> str:
    from importlib.util import decode_source

    # decode_source honours a PEP 263 coding line and normalises newlines, as the import system does.
    return decode_source(path.read_bytes())


# ------------------------------------------------------------------------------------------- keys

_K_CODE = _tag("labpipe.code_key.v1")
_K_CACHE = _tag("labpipe.cache_key.v1")


def code_key(
    source: str,
    helper_sources: list[str] | tuple[str, ...] = (),
    local_modules: dict[str, str] | None = None,
    settings: dict | None = None,
) -> str:
    """The code half of a cache key: what the step runs and the settings that change its result.

    source: the component function's source (its decorator is dropped: ``settings`` stands for it).
    helper_sources: the sources of its ``helper_functions``, in any order.
    local_modules: ``local_module_sources(source, script_dir)``, already normalised.
    settings: return_values, packages, docker image, repo and commit ... anything that changes the result.

    Raises ``Unfingerprintable`` if a source does not parse or a setting cannot be fingerprinted.
    """
    h = new_hasher()
    h.update(_K_CODE)
    _text(h, normalize_source(source))
    # Helpers keep their decorators (an @lru_cache is part of what a helper does) and their order is
    # free: they are all defined before the component runs.
    helpers = sorted(normalize_source(s, drop_decorators=False) for s in helper_sources)
    _count(h, b"", len(helpers))
    for helper in helpers:
        _text(h, helper)
    modules = sorted((local_modules or {}).items())
    _count(h, b"", len(modules))
    for name, text in modules:
        _text(h, name)
        _text(h, text)
    _feed_top(h, settings)
    return h.hexdigest()


def args_key(kwargs: dict) -> str:
    """The arguments half of a cache key: a fingerprint of the call's keyword arguments, in any order.

    kwargs: the component's arguments by name (a proxy contributes its artifact's content hash).

    Equal to ``fingerprint(kwargs)``; computed per argument so that the error names the argument.
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
    h = new_hasher()
    _feed_sorted_pairs(h, _T_DICT, pairs)
    return h.hexdigest()


def cache_key(code: str, args: str) -> str:
    """The cache key of a call: its ``code_key`` and ``args_key`` hashed together.

    code, args: the two hex digests; kept apart in the store so several code versions of a step coexist.
    """
    h = new_hasher()
    h.update(_K_CACHE)
    _text(h, code)
    _text(h, args)
    return h.hexdigest()
