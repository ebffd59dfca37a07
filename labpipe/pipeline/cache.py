"""The cache of pipeline steps, in one place: what a key covers, how a call is looked up, when to refresh.

- The code key of a function step (`StepCodeKey`: its source, helpers, local modules and the settings
  `code_settings` takes from its options), kept per function until a file it was read from changes.
- The call key (`RunCache.call_key`: code key + the arguments' fingerprints) and the key of a step
  that clones an existing task (`RunCache.task_step_key`). Every recipe is in `labpipe.hashing`,
  pinned by golden tests.
- The lookup (`RunCache.lookup`: the newest intact completed task with that key) and the check of
  cached inputs before a step reads them (`RunCache.damaged_inputs`).
- The refresh rules (`Refresh`): `refresh_cache()`, `LABPIPE_REFRESH`, and what a run records.

One `RunCache` per pipeline run holds what the run learned: artifact hashes, blobs verified intact,
steps whose cached outputs were found damaged (they run again).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactError, Unfingerprintable
from ..store import outputs, pipelines
from .proxy import is_result

if TYPE_CHECKING:
    from ..step_options import StepOptions
    from ..store.db import Database
    from ..store.pipelines import CacheHit
    from ..task import Task
    from .dag import DAG
    from .step import StepSpec

log = logging.getLogger("labpipe")

# ------------------------------------------------------------------------------------------ code key


def code_settings(options: StepOptions, *, form: str) -> dict[str, Any]:
    """The options that change a function step's result, as its code key hashes them.

    form: "component" (PipelineDecorator.component) or "controller" (add_function_step). The two
    forms differ in one respect, kept so that no existing key changes (both are pinned by golden
    tests): a component's settings always name repo_branch; a controller step's name it only when it
    is set (they once left it out, so steps that differed only by branch shared a key).
    """
    settings: dict[str, Any] = {
        "return_values": list(options.return_values), "packages": options.packages, "docker": options.docker,
        "repo": options.repo, "repo_commit": options.repo_commit,
    }
    if form == "component" or options.repo_branch is not None:
        settings["repo_branch"] = options.repo_branch
    return settings


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

    __slots__ = ("function", "helper_functions", "settings", "_kept", "_checked_in")

    def __init__(self, function: Callable, helper_functions: Sequence[Callable] = (), settings: dict | None = None):
        self.function = function
        self.helper_functions = tuple(helper_functions)
        self.settings = settings
        # (key, watched paths, their stamps), replaced as one tuple: another thread sees all or none.
        self._kept: tuple[str, tuple[str, ...], tuple[Any, ...]] | None = None
        self._checked_in: Any = None  # the run whose first use checked the files (see `get`)

    @classmethod
    def of(cls, function: Callable, options: StepOptions, *, form: str) -> StepCodeKey:
        """The code key of `function` declared with `options` (see `code_settings` for `form`)."""
        return cls(function, options.helper_functions, code_settings(options, form=form))

    def get(self, within: Any = None) -> str:
        """The key, computed again only if a watched file or folder changed since it was computed.

        within: the pipeline run asking. The files are checked on the first use in each run; the
        steps a run declares after that share the answer (a loop of 1,000 calls stats once, and every
        step of one run has the code of one moment).

        Raises ``Unfingerprintable`` if a source does not parse or a setting cannot be fingerprinted.
        """
        kept = self._kept
        if kept is not None and within is not None and self._checked_in is within:
            return kept[0]
        from ..source import file_stamps, find_local_modules  # lazily: `import labpipe` stays light

        if kept is not None and file_stamps(kept[1]) == kept[2]:
            self._checked_in = within
            return kept[0]
        from ..function_task import function_source, local_import_folders
        from ..hashing import code_key

        src = function_source(self.function)
        helpers = [function_source(h).source for h in self.helper_functions]
        modules = find_local_modules([src.source, *helpers], local_import_folders(src.folder))
        key = code_key(src.source, helpers, modules.sources, self.settings)
        self._kept = (key, modules.watched, modules.stamps)
        self._checked_in = within
        return key


# ------------------------------------------------------------------------------------------- refresh

_requested: bool | frozenset[str] = False


def refresh_request(steps: bool | Iterable[str]) -> bool | frozenset[str]:
    """What `refresh_cache(steps)` asks: True for every step, a set of step names, or False."""
    if steps is True:
        return True
    return frozenset(steps) if steps else False


def request_refresh(steps: bool | Iterable[str] = True) -> None:
    """Ask every run started from now on in this process to re-run these cached steps
    (`PipelineDecorator.refresh_cache`; a controller's own `refresh_cache` adds to it)."""
    global _requested
    _requested = refresh_request(steps)


def requested_refresh() -> bool | frozenset[str]:
    """The process-wide request: `LABPIPE_REFRESH` (all, or step_a,step_b) if set, else `request_refresh`'s."""
    env = os.environ.get("LABPIPE_REFRESH", "").strip()
    if env:
        return True if env.lower() in ("1", "all", "true", "*") else frozenset(s.strip() for s in env.split(",") if s.strip())
    return _requested


class Refresh:
    """Which steps of a run ignore the cache: all of them (True), some (names), or none."""

    __slots__ = ("steps",)

    def __init__(self, *requests: bool | Iterable[str] | None):
        """The union of `requests`: any True makes all; name sets add up; False and None add nothing."""
        steps: bool | frozenset[str] = False
        for request in requests:
            if request is True:
                steps = True
                break
            if request:
                steps = frozenset(steps or ()) | frozenset(request)
        self.steps = steps

    @classmethod
    def recorded(cls, runtime: dict) -> bool | frozenset[str]:
        """The request a run recorded when it was created (`record`)."""
        value = runtime.get("refresh")
        return True if value is True else frozenset(value or ())

    def record(self) -> bool | list[str] | None:
        """What a run records of this request, for a controller started elsewhere to honour it."""
        if self.steps is True:
            return True
        return sorted(self.steps) if self.steps else None

    def covers(self, name: str) -> bool:
        """Whether step `name` (or the name it repeats, `train` for `train_2`) re-runs."""
        if self.steps is True:
            return True
        return bool(self.steps) and (name in self.steps or base_name(name) in self.steps)

    def warn_unknown(self, step_names: Iterable[str], pipeline_id: str) -> None:
        """A refresh naming no step of the run (a typo, or the function's name where the component has
        name=...) refreshes nothing: say so rather than leave the user believing it did."""
        if self.steps is True or not self.steps:
            return
        names = set(step_names)
        known = names | {base_name(n) for n in names}
        unknown = sorted(self.steps - known)
        if unknown:
            log.warning("pipeline %s: refresh asked for %s, but no step of this run has that name (its steps: %s)",
                        pipeline_id, ", ".join(map(repr, unknown)), ", ".join(sorted(names)) or "none")


def base_name(name: str) -> str:
    """The name a repeated step was declared with: `train` for `train_2` (ClearML names repeats so)."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


# ---------------------------------------------------------------------------------------- run cache


class RunCache:
    """The cache as one pipeline run sees it: keys, lookups, and what the run learned on the way."""

    def __init__(self, db: Database, refresh: Refresh):
        self.db = db
        self.refresh = refresh
        self._hashes: dict[str, dict[str, str]] = {}  # step -> {artifact: content hash}, once known
        self._verified: set[str] = set()  # hashes of cached outputs read back intact in this run
        self._recompute: set[str] = set()  # cached steps whose outputs were found corrupt: run them again
        self._warned: set[str] = set()  # steps already told they are not cached

    def call_key(self, step: str, code_key: str, kwargs: dict) -> str | None:
        """The cache key of a function step's call (its code key and its arguments' fingerprints), or None
        when an argument has no stable fingerprint: the step then runs uncached (said once per step)."""
        from ..hashing import args_key, cache_key

        try:
            return cache_key(code_key, args_key(kwargs))
        except Unfingerprintable as exc:
            self._not_cached(step, exc)
            return None

    def task_step_key(self, step: str, base: Task, overrides: dict, options: StepOptions) -> str | None:
        """The cache key of a step that clones `base`: its definition and its parameters after overrides."""
        from ..hashing import task_step_key

        params = dict(base.get_parameters(cast=True))
        params.update(overrides)
        try:
            return task_step_key(base.data.script, params, dict(options.configuration_overrides),
                                 dict(options.task_overrides), base.data.type)
        except Unfingerprintable as exc:
            self._not_cached(step, exc)
            return None

    def _not_cached(self, step: str, exc: Exception) -> None:
        if step not in self._warned:
            self._warned.add(step)
            log.warning("step %r is not cached: %s", step, exc)

    def lookup(self, step: str, key: str | None, return_values: Sequence[str] | None = None) -> CacheHit | None:
        """The task an identical earlier call left, if the step may be served from the cache: not
        refreshed, not found damaged in this run, and its outputs (`return_values`, default all) intact.
        A hit's artifact hashes are remembered (`result_hash`)."""
        if key is None or self.refresh.covers(step) or step in self._recompute:
            return None
        found = pipelines.find_cached_outputs(self.db, key, None if return_values is None else list(return_values))
        if found is None:
            return None
        self._hashes[step] = found.hashes
        return found

    def damaged_inputs(self, spec: StepSpec, dag: DAG) -> list[str]:
        """The cached parents whose outputs this step is about to read and that fail their hash.

        A cache hit checks only that its blobs are there with the right size (a stat), so that a hit
        stays cheap; the hash is checked when the bytes are read. A step about to run will read its
        inputs anyway, so inputs reused from the cache are verified here first (once per run): a
        damaged one is quarantined, and its step runs again before this one, instead of this step
        failing in its worker.
        """
        from ..store import blobs

        damaged = []
        for value in spec.kwargs.values():
            if not is_result(value) or dag[value.step_name].status != "cached":
                continue
            digest = self._hashes.get(value.step_name, {}).get(value.artifact_name)
            if digest is None or digest in self._verified:
                continue
            if blobs.verify(self.db, digest):
                self._verified.add(digest)
            elif value.step_name not in damaged:
                damaged.append(value.step_name)
        return damaged

    def recompute(self, step: str) -> None:
        """Step `step`'s cached outputs are damaged: forget them, and never serve it from the cache again
        in this run."""
        self._recompute.add(step)
        self._hashes.pop(step, None)

    def result_hash(self, step: str, task_id: str, artifact: str) -> str:
        """The content hash of a finished step's artifact (read once per step, then remembered)."""
        hashes = self._hashes.get(step)
        if hashes is None or artifact not in hashes:
            hashes = self._hashes[step] = {a["name"]: a["hash"] for a in outputs.get_artifacts(self.db, task_id)}
        if artifact not in hashes:
            raise ArtifactError(f"step {step!r} (task {task_id}) has no return value {artifact!r}")
        return hashes[artifact]
