"""numpy and pandas values: arrays, scalars, dtypes, DataFrames, Series, Index, extension arrays.

An array counts by its dtype, shape and the bytes of its contents in C order, so a view hashes like the
array it shows; values whose bytes are pointers (object arrays, extension dtypes) are walked element by
element instead.

numpy and pandas are never imported here: ``core`` looks them up in ``sys.modules`` (a value of their types
can only exist if they were imported) and passes the modules in, together with ``feed``: ``core._feed``,
with which the elements, names and labels inside an array or frame are written. ``core`` imports this
module, so taking ``feed`` as an argument is what keeps this module from importing ``core`` back.
"""

from __future__ import annotations

import sys

import xxhash

from labpipe.fingerprint.encoding import (
    Feed,
    NoFingerprint,
    encode_tag,
    enter_container,
    feed_repr,
    short_repr,
    type_name,
    write_atom,
    write_count,
    write_text,
)

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


# --------------------------------------------------------------------------------------- numpy


def feed_numpy(h: xxhash.xxh3_128, value, np, active: set[int], feed: Feed) -> bool:
    """numpy arrays, scalars, dtypes and functions; False if ``value`` is none of them."""
    if isinstance(value, np.ndarray):
        _feed_ndarray(h, value, np, active, feed)
    elif isinstance(value, np.generic):
        dtype = value.dtype
        h.update(_T_NPSCALAR)
        write_text(h, _dtype_text(dtype))
        if _dtype_holds_objects(dtype):
            feed(h, value.item(), active)
        else:
            # dtype + raw bytes: np.float32(1) and np.float64(1) are different values to numpy code.
            write_atom(h, b"", value.tobytes())
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


def _feed_ndarray(h, arr, np, active, feed: Feed) -> None:
    if type(arr) is not np.ndarray:
        h.update(_T_NDSUBCLASS)
        write_text(h, type_name(type(arr)))
        ma = sys.modules.get("numpy.ma")
        if ma is not None and isinstance(arr, ma.MaskedArray):
            # The mask is part of a masked array's value; the data under it is kept (conservative).
            _feed_ndarray(h, ma.getmaskarray(arr), np, active, feed)
            feed(h, arr.fill_value, active)
            arr = arr.data
        else:
            arr = arr.view(np.ndarray)
    h.update(_T_NDARRAY)
    write_text(h, _dtype_text(arr.dtype))
    feed(h, tuple(int(n) for n in arr.shape), active)
    if _dtype_holds_objects(arr.dtype):
        key = enter_container(arr, active)
        try:
            for i, item in enumerate(arr.ravel(order="C")):
                try:
                    feed(h, item, active)
                except NoFingerprint as exc:
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


def feed_pandas(h: xxhash.xxh3_128, value, pd, np, active: set[int], feed: Feed) -> bool:
    """pandas DataFrame, Series, Index, extension arrays and scalars; False if ``value`` is none of them."""
    if isinstance(value, pd.DataFrame):
        key = enter_container(value, active)
        try:
            h.update(_T_DATAFRAME)
            _feed_index(h, value.columns, pd, np, active, feed)
            _feed_index(h, value.index, pd, np, active, feed)
            write_count(h, b"", value.shape[1])
            for i in range(value.shape[1]):
                column = value.iloc[:, i]  # by position: column labels may repeat
                try:
                    _feed_pandas_values(h, column, pd, np, active, feed)
                except NoFingerprint as exc:
                    exc.path.append(f"[column {short_repr(column.name)}]")
                    raise
        finally:
            active.discard(key)
    elif isinstance(value, pd.Series):
        key = enter_container(value, active)
        try:
            h.update(_T_SERIES)
            feed(h, value.name, active)
            _feed_index(h, value.index, pd, np, active, feed)
            _feed_pandas_values(h, value, pd, np, active, feed)
        finally:
            active.discard(key)
    elif isinstance(value, pd.Index):
        _feed_index(h, value, pd, np, active, feed)
    elif isinstance(value, pd.api.extensions.ExtensionArray):
        h.update(_T_PDARRAY)
        _feed_pandas_values(h, pd.Series(value, copy=False), pd, np, active, feed)
    elif isinstance(value, (pd.Timestamp, pd.Timedelta, pd.Period, pd.Interval, type(pd.NaT), type(pd.NA))):
        # Stable labels, not the classes' module paths, which pandas moves between versions.
        feed_repr(h, value, f"pandas.{type(value).__name__}")
    else:
        return False
    return True


def _feed_index(h, index, pd, np, active, feed: Feed) -> None:
    # Class name too: a RangeIndex and an Index of the same ints slice differently (loc vs iloc).
    h.update(_T_INDEX)
    write_text(h, type(index).__name__)
    feed(h, list(index.names), active)
    if isinstance(index, pd.RangeIndex):
        feed(h, range(index.start, index.stop, index.step), active)
    elif isinstance(index, pd.MultiIndex):
        write_count(h, b"", index.nlevels)
        for level in range(index.nlevels):
            _feed_pandas_values(h, index.get_level_values(level), pd, np, active, feed)
    else:
        _feed_pandas_values(h, index, pd, np, active, feed)


def _feed_pandas_values(h, obj, pd, np, active, feed: Feed) -> None:
    """The dtype and values of a Series or Index (its index and name are written by the caller)."""
    dtype = obj.dtype
    h.update(_T_PDVALUES)
    write_text(h, str(dtype))
    if isinstance(dtype, np.dtype):
        _feed_ndarray(h, obj.to_numpy(), np, active, feed)  # a view, not a copy, for numpy dtypes
    elif isinstance(dtype, pd.CategoricalDtype):
        categorical = obj.array
        _feed_index(h, categorical.categories, pd, np, active, feed)
        feed(h, bool(categorical.ordered), active)  # an exact bool: written as core._feed_bool writes it
        _feed_ndarray(h, categorical.codes, np, active, feed)
    else:
        # Extension dtypes (nullable ints, strings, tz-aware datetimes, periods, arrow) keep internal
        # buffers whose layout is theirs to change; the Python scalars they hand out are the value.
        _feed_ndarray(h, obj.to_numpy(dtype=object), np, active, feed)
