"""What a pipeline step is before it runs: its spec (shared by decorator components and controller steps)
and the checks of its declared options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import names
from ..errors import PipelineError
from ..step_options import StepOptions
from .proxy import is_result


@dataclass
class StepSpec:
    """One declared node: what runs (`kind`, `function` + `kwargs`, or a nested pipeline's `runner`) and
    the options it was declared with (`options`, one `StepOptions` record).

    kind: "function" (a component / function step), "task" (a clone of `options.base_task_id` with
    its overrides) or "pipeline" (a nested pipeline run).
    """

    name: str
    kind: str = "function"
    options: StepOptions = field(default_factory=StepOptions)
    function: Callable | None = None
    kwargs: dict = field(default_factory=dict)
    #: steps that must finish first: the declared parents, then those whose results it takes
    parents: list[str] = field(default_factory=list)
    #: the code half of the cache key (function steps with cache on), computed at declaration
    code_key: str | None = None
    #: resolve ClearML `${...}` references in literal arguments at launch (controller function steps)
    references: bool = False
    #: arguments stored elsewhere (as artifacts of the pipeline) that count in the cache key by value
    arg_fingerprints: dict = field(default_factory=dict)
    #: a nested pipeline: the callable that runs its logic and returns its task id.
    runner: Callable | None = None

    def behaviour(self) -> dict[str, bool]:
        """The effective continue_behaviour (ClearML's defaults filled in)."""
        return self.options.behaviour(self.name)


def monitor_pairs(items: list, what: str, step: str) -> list[tuple]:
    """Normalise ClearML's monitor_* lists: plain names become (name, name) pairs.

    A monitor_artifacts target becomes an artifact of the pipeline task, so it must be a valid
    artifact name (InvalidName otherwise); callers check at declaration, before anything runs.
    """
    out = []
    for item in items or []:
        if isinstance(item, str):
            out.append((item, item))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append((item[0], item[1]))
        else:
            raise PipelineError(f"step {step!r}: {what} entry {item!r} must be a name or a (source, target) pair")
        if what == "monitor_artifacts":
            names.check_artifact_name(out[-1][1], where=f"step {step!r}: monitor_artifacts")
    return out


def metric_pairs(items: list, step: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Normalise monitor_metrics: (title, series) or ((title, series), (target_title, target_series))."""
    out = []
    for item in items or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out.append((tuple(item), tuple(item)))
        elif (isinstance(item, (list, tuple)) and len(item) == 2
              and all(isinstance(x, (list, tuple)) and len(x) == 2 for x in item)):
            out.append((tuple(item[0]), tuple(item[1])))
        else:
            raise PipelineError(
                f"step {step!r}: monitor_metrics entry {item!r} must be (title, series) or ((title, series), (target_title, target_series))"
            )
    return out


def check_picklable(step: str, kwargs: dict) -> None:
    """A non-picklable argument is an error naming it and the step, before anything is launched."""
    import io

    for key, value in kwargs.items():
        if is_result(value) or value is None or isinstance(value, (bool, int, float, str, bytes)):
            continue
        try:
            _picklability_checker()(io.BytesIO(), protocol=5).dump(value)
        except Exception as exc:
            raise PipelineError(
                f"step {step!r}: argument {key!r} of type {type(value).__module__}.{type(value).__qualname__} cannot be "
                f"pickled ({type(exc).__name__}: {exc}), so it cannot be sent to a worker; pass something picklable"
            ) from None


@functools.cache
def _picklability_checker() -> type:
    """A cloudpickle Pickler that leaves proxies out: a proxy inside a list or dict stands for a step's
    result, and pickling it would wait for that step here, in the caller's thread, holding up the logic."""
    import cloudpickle

    class Checker(cloudpickle.CloudPickler):
        def persistent_id(self, obj: Any) -> Any:
            return 1 if is_result(obj) else None

    return Checker
