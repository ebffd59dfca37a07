"""What frameworks save becomes the task's output model, as ClearML's `auto_connect_frameworks` does.

A script ported from ClearML expects `joblib.dump(model, "model.pkl")` or xgboost's
`booster.save_model("a_model.xgb")` to register an output model on the running task, and reads it
back as `Task.current_task().models["output"][-1]`. So while binding is on, those calls go on as
before and then store the file as an `OutputModel` of `Task.current_task()` (named after the file,
with the framework's name; saving the same file again updates that model). With no current task they
only save.

Binding costs nothing until a framework is used: nothing is imported here. An import hook patches a
framework right after the user's code first imports it (or at once, if it is imported already). A
patch that no longer fits the framework's API is skipped with one warning; a failure while
registering a model is logged, never raised into the user's save.

Which frameworks: `Task.init(auto_connect_frameworks=True | False | {"joblib": False, ...})`, as in
ClearML; on by default, for `Task.init` scripts and for every task a worker runs. Bound today: joblib
(`joblib.dump`, which scikit-learn models are saved with) and xgboost (`Booster.save_model`); other
names ClearML knows (pytorch, tensorflow, matplotlib, ...) are accepted and not bound.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: framework name (ClearML's key) -> module whose import triggers the patch
BOUND = {"joblib": "joblib", "xgboost": "xgboost"}
#: names ClearML's auto_connect_frameworks takes that labpipe accepts but does not bind
KNOWN = frozenset({*BOUND, "matplotlib", "tensorflow", "tensorboard", "pytorch", "scikit", "fastai", "lightgbm",
                   "hydra", "detect_repository", "tfdefines", "megengine", "catboost", "gradio", "jsonargparse"})

_enabled: dict[str, bool] = {name: True for name in BOUND}
_patched: set[str] = set()
_lock = threading.Lock()
_models: dict[tuple[str, str], Any] = {}  # (task id, file path) -> the OutputModel that file became


def configure(setting: bool | dict | None = True) -> None:
    """Turn binding on or off: True / False for all, or {framework: bool} (unnamed ones stay on)."""
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - KNOWN)
        if unknown:
            raise ValueError(f"auto_connect_frameworks: unknown framework(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(KNOWN))}")
        for name in BOUND:
            _enabled[name] = bool(setting.get(name, True))
    else:
        for name in BOUND:
            _enabled[name] = setting is None or bool(setting)
    if any(_enabled.values()):
        install()


def install() -> None:
    """Patch the bound frameworks already imported, and the others when they are (once per process)."""
    with _lock:
        if not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())
        for module_name in BOUND.values():
            if module_name in sys.modules:
                _patch(module_name, sys.modules[module_name])


def enabled(framework: str) -> bool:
    return _enabled.get(framework, False)


class _Finder:
    """Finds nothing itself: for a bound framework's top module, wraps the real loader so the patch runs
    right after the module has executed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None):
        if name not in BOUND.values() or name in _patched:
            return None
        import importlib.util

        sys.meta_path.remove(self)  # find the real spec without finding ourselves again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _PatchingLoader(spec.loader, name)
        return spec


class _PatchingLoader:
    def __init__(self, loader: Any, name: str):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _patch(self._name, module)

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, attr)


def _patch(module_name: str, module: Any) -> None:
    if module_name in _patched:
        return
    _patched.add(module_name)
    try:
        if module_name == "joblib":
            module.dump = _after_save(module.dump, "joblib", lambda args, kwargs: args[1] if len(args) > 1 else kwargs.get("filename"))
        elif module_name == "xgboost":
            booster = module.Booster
            booster.save_model = _after_save(booster.save_model, "xgboost",
                                             lambda args, kwargs: args[1] if len(args) > 1 else kwargs.get("fname"))
    except AttributeError as exc:
        log.warning("labpipe: cannot bind %s (its API changed: %s); its saved models are not registered", module_name, exc)


def _after_save(save: Callable, framework: str, path_of: Callable[[tuple, dict], Any]) -> Callable:
    if getattr(save, "_labpipe_bound", False):
        return save

    @functools.wraps(save)
    def bound(*args: Any, **kwargs: Any) -> Any:
        result = save(*args, **kwargs)
        if _enabled.get(framework):
            path = path_of(args, kwargs)
            if isinstance(path, (str, os.PathLike)):
                _register(os.fspath(path), framework)
        return result

    bound._labpipe_bound = True
    return bound


_FRAMEWORK_NAMES = {"joblib": "scikit-learn", "xgboost": "XGBoost"}


def _register(path: str, framework: str) -> None:
    """Store the saved file as an output model of the current task (updated when saved again)."""
    from .errors import LabpipeError
    from .models import OutputModel
    from .task import Task

    try:
        task = Task.current_task()
        if task is None or not os.path.isfile(path):
            return
        key = (task.id, os.path.abspath(path))
        model = _models.get(key)
        if model is None:
            model = _models[key] = OutputModel(task=task, name=os.path.basename(path), framework=_FRAMEWORK_NAMES[framework])
        model.update_weights(path)
    except (LabpipeError, OSError, ValueError) as exc:
        log.warning("labpipe: the model %s saved with %s was not registered: %s", path, framework, exc)
