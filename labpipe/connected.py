"""What `Task.connect` hands back: a dict or an object whose later changes are recorded on the task.

ClearML returns a dict that writes through to the task (`config = task.connect(config); config["lr"] = 0.2`
records the new value), and records an object's attributes when they are assigned. labpipe does the
same: `ConnectedDict` records each change as the parameter `section/key`; an object (an
`argparse.Namespace`, a config class instance) gets a subclass of its own class whose `__setattr__`
records the attribute too. Both pickle as what they wrap (a plain dict, the original class), so a
connected value can be passed to a component like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Record = Callable[[str, Any], None]
Forget = Callable[[str], None]


class ConnectedDict(dict):
    """A dict whose assignments and deletions are recorded on the task it was connected to."""

    def __init__(self, values: dict, record: Record, forget: Forget):
        super().__init__(values)
        self._record, self._forget = record, forget

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._record(str(key), value)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._forget(str(key))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: Any, *default: Any) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had:
            self._forget(str(key))
        return value

    def popitem(self) -> tuple[Any, Any]:
        key, value = super().popitem()
        self._forget(str(key))
        return key, value

    def clear(self) -> None:
        for key in list(self):
            del self[key]

    def __reduce__(self):  # pickled (sent to a component) as the plain dict it holds
        return (dict, (dict(self),))

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict:
        import copy

        return copy.deepcopy(dict(self), memo)


def watch_attributes(obj: Any, record: Record) -> Any:
    """Make later public attribute assignments on `obj` recorded; returns `obj` (or leaves it as it is,
    with a warning, when its class cannot be swapped: builtins, __slots__ layouts)."""
    cls = type(obj)
    if getattr(cls, "_labpipe_connected", False):
        obj.__dict__["_labpipe_record"] = record
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        cls.__setattr__(self, name, value)
        if not name.startswith("_"):
            self.__dict__["_labpipe_record"](name, value)

    def __reduce_ex__(self, protocol: int):  # pickled as an instance of the original class
        state = {k: v for k, v in self.__dict__.items() if k != "_labpipe_record"}
        return (_rebuild, (cls, state))

    watched = type(cls.__name__, (cls,), {"__setattr__": __setattr__, "__reduce_ex__": __reduce_ex__,
                                          "_labpipe_connected": True, "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__})
    try:
        obj.__dict__["_labpipe_record"] = record
        obj.__class__ = watched
    except (TypeError, AttributeError):
        obj.__dict__.pop("_labpipe_record", None) if hasattr(obj, "__dict__") else None
        log.warning("connect(%s): its attributes were recorded now, but later assignments cannot be followed", cls.__qualname__)
    return obj


def _rebuild(cls: type, state: dict) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj
