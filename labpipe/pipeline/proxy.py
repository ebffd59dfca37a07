"""Lazy step results: what a component call returns at once, while its step runs elsewhere.

A `StepResult` stands for one return value (one artifact) of one pipeline node. Passed to another
component it travels as a reference (task id + artifact name), so the bytes go store -> worker and
never through the controller. Used in the pipeline logic (arithmetic, print, if, indexing, attribute
access, iteration...), it waits for its step, loads the artifact once, and behaves as the object.
"""

from __future__ import annotations

import operator
from typing import Any, Protocol


class ResultSource(Protocol):
    """What a proxy asks for its value and its hash: the pipeline run that owns its step."""

    def result_value(self, name: str, artifact: str) -> Any: ...

    def result_hash(self, name: str, artifact: str) -> str: ...


class StepResult:
    """The (future) value of return value `artifact` of pipeline node `node`."""

    __slots__ = ("_run", "_node", "_artifact", "_loaded", "_value")

    def __init__(self, run: ResultSource, node: str, artifact: str):
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_artifact", artifact)
        object.__setattr__(self, "_loaded", False)
        object.__setattr__(self, "_value", None)

    # -- labpipe's own protocol (never forwarded) ----------------------------------------

    @property
    def step_name(self) -> str:
        """The pipeline node whose result this stands for."""
        return object.__getattribute__(self, "_node")

    @property
    def artifact_name(self) -> str:
        """The return value (artifact) of that node this stands for."""
        return object.__getattribute__(self, "_artifact")

    def _resolve(self) -> Any:
        if not object.__getattribute__(self, "_loaded"):
            run = object.__getattribute__(self, "_run")
            value = run.result_value(object.__getattribute__(self, "_node"), object.__getattribute__(self, "_artifact"))
            object.__setattr__(self, "_value", value)
            object.__setattr__(self, "_loaded", True)
        return object.__getattribute__(self, "_value")

    def __labpipe_fingerprint__(self) -> str:
        """The artifact's content hash: an upstream rerun that yields the same bytes still hits the cache."""
        run = object.__getattribute__(self, "_run")
        return "artifact:" + run.result_hash(object.__getattribute__(self, "_node"), object.__getattribute__(self, "_artifact"))

    def __reduce__(self):
        # Pickling a proxy would ship the controller's state; resolving here is what the user meant.
        return (_identity, (self._resolve(),))

    # -- behave as the value -------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._resolve(), name, value)

    def __repr__(self) -> str:
        return repr(self._resolve())

    def __str__(self) -> str:
        return str(self._resolve())

    def __format__(self, spec: str) -> str:
        return format(self._resolve(), spec)

    def __bool__(self) -> bool:
        return bool(self._resolve())

    def __len__(self) -> int:
        return len(self._resolve())

    def __iter__(self):
        return iter(self._resolve())

    def __contains__(self, item: Any) -> bool:
        return item in self._resolve()

    def __getitem__(self, key: Any) -> Any:
        return self._resolve()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._resolve()[key] = value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __hash__(self) -> int:
        return hash(self._resolve())

    def __int__(self) -> int:
        return int(self._resolve())

    def __float__(self) -> float:
        return float(self._resolve())

    def __index__(self) -> int:
        return operator.index(self._resolve())

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self._resolve(), ndigits)

    def __neg__(self):
        return -self._resolve()

    def __pos__(self):
        return +self._resolve()

    def __abs__(self):
        return abs(self._resolve())

    def __invert__(self):
        return ~self._resolve()

    def __array__(self, *args: Any, **kwargs: Any):
        import numpy as np

        return np.asarray(self._resolve(), *args, **kwargs)


def _identity(value: Any) -> Any:
    return value


def _value(obj: Any) -> Any:
    return obj._resolve() if isinstance(obj, StepResult) else obj


def _binary(op):
    def forward(self, other):
        return op(self._resolve(), _value(other))

    def reflected(self, other):
        return op(_value(other), self._resolve())

    return forward, reflected


for _name, _op in {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
    "and": operator.and_, "or": operator.or_, "xor": operator.xor, "lshift": operator.lshift, "rshift": operator.rshift,
    "divmod": divmod,
}.items():
    _fwd, _rev = _binary(_op)
    setattr(StepResult, f"__{_name}__", _fwd)
    setattr(StepResult, f"__r{_name}__", _rev)

for _name, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
                   "eq": operator.eq, "ne": operator.ne}.items():
    setattr(StepResult, f"__{_name}__", _binary(_op)[0])


def is_result(obj: Any) -> bool:
    """Whether `obj` is a step's lazy result (checked without resolving it)."""
    return type(obj) is StepResult
