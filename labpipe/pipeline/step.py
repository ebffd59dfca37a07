"""What a pipeline step is before it runs: its spec and its code key (shared by decorator components and controller steps)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import names
from ..errors import PipelineError
from .proxy import is_result

#: ClearML's continue_behaviour keys and their defaults when continue_on_fail is False.
CONTINUE_KEYS = ("continue_on_fail", "continue_on_abort", "skip_children_on_fail", "skip_children_on_abort")


@dataclass
class StepSpec:
    """Everything needed to launch one node: what runs, where, with which policy and callbacks.

    kind: "function" (a component / function step: `function` + `kwargs`), "task" (clone of
    `base_task_id` with `parameter_override`) or "pipeline" (a nested pipeline run).
    """

    name: str
    kind: str = "function"
    function: Callable | None = None
    kwargs: dict = field(default_factory=dict)
    return_values: tuple[str, ...] = ("return_object",)
    base_task_id: str | None = None
    parameter_override: dict = field(default_factory=dict)
    configuration_overrides: dict = field(default_factory=dict)
    task_overrides: dict = field(default_factory=dict)
    clone_base_task: bool = True
    queue: str | None = None
    cache: bool = False
    task_type: str | None = None
    task_name: str | None = None
    packages: list[str] | str | None = None
    docker: str | None = None
    docker_args: str | None = None
    docker_bash_setup_script: str | None = None
    repo: str | None = None
    repo_branch: str | None = None
    repo_commit: str | None = None
    helper_functions: tuple[Callable, ...] = ()
    tags: list[str] = field(default_factory=list)
    continue_on_fail: bool = False
    continue_behaviour: dict | None = None
    retry_on_failure: int | Callable | None = None
    pre_execute_callback: Callable | None = None
    post_execute_callback: Callable | None = None
    status_change_callback: Callable | None = None
    monitor_metrics: list = field(default_factory=list)
    monitor_artifacts: list = field(default_factory=list)
    monitor_models: list = field(default_factory=list)
    time_limit: float | None = None
    stage: str | None = None
    draft: bool = False
    working_dir: str | None = None
    parents: list[str] = field(default_factory=list)
    code_key: str | None = None
    #: resolve ClearML `${...}` references in literal arguments at launch (controller function steps)
    references: bool = False
    #: arguments stored elsewhere (as artifacts of the pipeline) that count in the cache key by value
    arg_fingerprints: dict = field(default_factory=dict)
    #: a nested pipeline: the callable that runs its logic and returns its task id.
    runner: Callable | None = None

    def behaviour(self) -> dict[str, bool]:
        """The effective continue_behaviour (ClearML's defaults filled in)."""
        out = {
            "continue_on_fail": bool(self.continue_on_fail),
            "continue_on_abort": False,
            "skip_children_on_fail": True,
            "skip_children_on_abort": True,
        }
        for key, value in (self.continue_behaviour or {}).items():
            if key not in CONTINUE_KEYS:
                raise PipelineError(f"step {self.name!r}: continue_behaviour key {key!r} is unknown; expected {', '.join(CONTINUE_KEYS)}")
            out[key] = bool(value)
        return out


class StepCodeKey:
    """The code half of a function step's cache key, kept until a file it was read from changes.

    What it covers: the function's source, its helper functions' sources, the project's own modules
    that any of them imports (transitively), looked up where the step will import them
    (``function_task.local_import_folders``: the function's folder, then the pipeline script's), and
    ``settings``. Computing it reads and parses those modules; a component is called once per step of
    every run, so the key is kept. But a notebook or any long-lived process may edit a module between
    two runs, so each use first stats the folders searched and the files read (a few microseconds)
    and computes the key again if any changed. The function and helper sources themselves are those
    of the function objects (``function_source`` keeps them per object): redefining a function makes
    a new component, with a key of its own.
    """

    __slots__ = ("function", "helper_functions", "settings", "_kept")

    def __init__(self, function: Callable, helper_functions: Sequence[Callable] = (), settings: dict | None = None):
        self.function = function
        self.helper_functions = tuple(helper_functions)
        self.settings = settings
        # (key, watched paths, their stamps), replaced as one tuple: another thread sees all or none.
        self._kept: tuple[str, tuple[str, ...], tuple[Any, ...]] | None = None

    def get(self) -> str:
        """The key, computed again only if a watched file or folder changed since it was computed.

        Raises ``Unfingerprintable`` if a source does not parse or a setting cannot be fingerprinted.
        """
        from ..source import file_stamps, find_local_modules  # lazily: `import labpipe` stays light

        kept = self._kept
        if kept is not None and file_stamps(kept[1]) == kept[2]:
            return kept[0]
        from ..function_task import function_source, local_import_folders
        from ..hashing import code_key

        src = function_source(self.function)
        helpers = [function_source(h).source for h in self.helper_functions]
        modules = find_local_modules([src.source, *helpers], local_import_folders(src.folder))
        key = code_key(src.source, helpers, modules.sources, self.settings)
        self._kept = (key, modules.watched, modules.stamps)
        return key


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
