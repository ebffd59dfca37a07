"""Code as a value: functions, code objects, classes, partials and methods passed as arguments.

A callable counts by what it does, not by its identity: the project's own functions and classes by their
normalised source (``labpipe.source``), a lambda by its bytecode, a closure with its cells' values, a
library function by its name (its version is a setting).

The cells, bound objects and partial arguments are ordinary values, so this module writes them with the
``feed`` it is given: ``core._feed``, passed in by ``core`` (which imports this module), so that this
module never imports ``core`` back.
"""

from __future__ import annotations

import sys
import types

import xxhash

from labpipe.errors import Unfingerprintable
from labpipe.fingerprint.encoding import (
    Feed,
    NoFingerprint,
    encode_tag,
    type_name,
    write_atom,
    write_count,
    write_text,
)
from labpipe.source import is_library_code, normalize_source

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


def feed_callable(h: xxhash.xxh3_128, value, active: set[int], feed: Feed) -> bool:
    """Functions, methods, partials and classes; False if ``value`` is none of them."""
    if isinstance(value, types.FunctionType):
        _feed_function(h, value, active, feed)
    elif isinstance(value, types.MethodType):
        # A bound method: what it does depends on the object it is bound to.
        h.update(_T_METHOD)
        feed(h, value.__self__, active)
        feed(h, value.__func__, active)
    elif isinstance(value, types.BuiltinFunctionType):
        h.update(_T_BUILTIN)
        write_text(h, str(value.__module__))
        write_text(h, value.__qualname__)
        bound = value.__self__
        feed(h, None if bound is None or isinstance(bound, types.ModuleType) else bound, active)
    elif isinstance(
        value, types.MethodDescriptorType | types.WrapperDescriptorType | types.ClassMethodDescriptorType
    ):
        h.update(_T_DESCRIPTOR)
        write_text(h, type_name(value.__objclass__))
        write_text(h, value.__name__)
    elif _is_partial(value):
        h.update(_T_PARTIAL)
        feed(h, value.func, active)
        feed(h, value.args, active)
        feed(h, value.keywords, active)
    elif isinstance(value, type):
        _feed_class(h, value)
    else:
        return False
    return True


def _is_partial(value) -> bool:
    functools = sys.modules.get("functools")
    return functools is not None and isinstance(value, functools.partial)


def _feed_function(h, fn: types.FunctionType, active, feed: Feed) -> None:
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
                _feed_code(h, fn.__code__, active, feed)
        cells = fn.__closure__ or ()
        write_count(h, _T_CELL, len(cells))
        for name, cell in zip(fn.__code__.co_freevars, cells, strict=False):
            try:
                contents = cell.cell_contents
            except ValueError:
                h.update(_T_EMPTY_CELL)
                continue
            try:
                feed(h, contents, active)
            except NoFingerprint as exc:
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


def _feed_code(h, code: types.CodeType, active, feed: Feed) -> None:
    # Bytecode without line numbers: stable across processes for one Python version (an upgrade misses).
    h.update(_T_CODE)
    write_atom(h, b"", code.co_code)
    for n in (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags):
        feed(h, n, active)  # exact ints: written as core._feed_int writes them
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        feed(h, names, active)
    write_count(h, b"", len(code.co_consts))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const, active, feed)
        else:
            feed(h, const, active)


def _feed_class(h, cls: type) -> None:
    """A class by name, plus its normalised source when it is the project's own code."""
    h.update(_T_CLASS)
    write_text(h, type_name(cls))
    if is_library_code(cls):
        h.update(b"\x00")
        return
    import inspect

    try:
        source = normalize_source(inspect.getsource(cls), drop_decorators=False)
    except (OSError, TypeError, Unfingerprintable):
        raise NoFingerprint(cls, f"the source of class {cls.__qualname__} cannot be read") from None
    h.update(b"\x01")
    write_text(h, source)
