"""Hyperparameters: 'Section/name' keys and values that round-trip with their type.

ClearML keeps parameters in sections (`Args/` for a script's or a pipeline's arguments, `kwargs/`
for a component's, `General/` by default). Values are stored as JSON plus the Python type name, so
`0.1` comes back a float, `3` an int, `(1, 2)` a tuple and `None` None.
"""

from __future__ import annotations

import enum
import json
from pathlib import PurePath
from typing import Any

from .errors import ParameterError

DEFAULT_SECTION = "General"


def split_key(key: str, default_section: str = DEFAULT_SECTION) -> tuple[str, str]:
    """'Args/lr' -> ('Args', 'lr'); 'lr' -> ('General', 'lr'). The name may contain more slashes."""
    if not isinstance(key, str) or not key or key.startswith("/") or key.endswith("/"):
        raise ParameterError(f"parameter name {key!r} is not valid; use 'Section/name' such as 'Args/lr'")
    section, sep, name = key.partition("/")
    if not sep:
        return default_section, key
    return section, name


def encode(value: Any) -> tuple[str, str]:
    """(value_json, type_name) for a parameter value."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, PurePath):
        return json.dumps(str(value)), "str"
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value), type(value).__name__
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value), type(value).__name__
        except (TypeError, ValueError):
            pass
    # Anything else is kept as its text, as ClearML does; the type name says what it was.
    return json.dumps(str(value)), "str"


def as_text(value: Any) -> str:
    """A parameter value as ClearML shows it uncast: None as '', lists, tuples and dicts as JSON, else str()."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            pass
    return str(value)


_EXAMPLES: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False, "list": [], "tuple": (), "dict": {}}


def keep_type(text: str, type_name: str, name: str = "value") -> Any:
    """A text value (as `get_parameters()` returns it) back in the parameter's stored type:
    '0.2' for a float is 0.2, '' for a None is None. Text that does not read as that type stays
    text, as ClearML keeps whatever was typed."""
    if type_name == "NoneType":
        return None if text == "" else text
    example = _EXAMPLES.get(type_name)
    if example is None:
        return text
    try:
        return cast_like(text, example, name)
    except ParameterError:
        return text


def decode(value_json: str, type_name: str) -> Any:
    """The Python value of a stored parameter."""
    value = json.loads(value_json)
    if type_name == "tuple" and isinstance(value, list):
        return tuple(value)
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def cast_like(value: Any, example: Any, name: str = "value") -> Any:
    """Convert an overridden value to the type of the value it replaces (e.g. '5' -> 5 for an int).

    A value that does not convert, or would lose something on the way ('2.7' for an int, 'abc' for a
    float, 'maybe' for a bool), raises ParameterError naming `name` and the type expected: passing it
    on as a string, or truncated, would run the task with something nobody asked for. A value for a
    list, tuple or dict that is neither JSON text nor a sequence, and any value replacing one of another
    type (a set, an object), is passed on unchanged.
    """
    if example is None or value is None:
        return value
    if isinstance(value, type(example)) and not (isinstance(value, bool) and not isinstance(example, bool)):
        return value
    # bool before the numbers: True is an int, but an int example must not accept a bool.
    if isinstance(example, bool):
        return _cast_bool(value, example, name)
    if isinstance(example, (int, float)):
        return _cast_number(value, example, name)
    if isinstance(example, (list, tuple, dict)):
        return _cast_container(value, example, name)
    if isinstance(example, str):
        return str(value)
    return value


def _refused(value: Any, example: Any, name: str, why: str = "") -> ParameterError:
    return ParameterError(f"{name}: expected {type(example).__name__} (like {example!r}), got {value!r}{why}")


def _cast_bool(value: Any, example: bool, name: str) -> bool:
    """'yes'/'no', 'true'/'false', 'on'/'off', '1'/'0', '' (any case, spaces around) and the ints 0 and 1."""
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _refused(value, example, name)


def _cast_number(value: Any, example: int | float, name: str) -> int | float:
    """A number or numeric text as `example`'s type; for an int, only a whole number (no truncation)."""
    if isinstance(value, bool):
        raise _refused(value, example, name)
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise _refused(value, example, name) from None
    if not isinstance(number, (int, float)):
        raise _refused(value, example, name)
    if isinstance(example, int):
        if isinstance(number, float) and not number.is_integer():
            raise _refused(value, example, name, ": it is not a whole number")
        return int(number)
    return float(number)


def _cast_container(value: Any, example: list | tuple | dict, name: str) -> Any:
    """JSON text (a list for a list or tuple, an object for a dict), or a list/tuple for a list/tuple."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise _refused(value, example, name, ": not JSON") from None
        if isinstance(example, dict) != isinstance(parsed, dict) or not isinstance(parsed, (list, dict)):
            raise _refused(value, example, name)
        return type(example)(parsed)
    if isinstance(example, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(example)(value)
    return value
