"""labpipe: ClearML-style ML pipelines on a laptop. One SQLite file, no server.

    from labpipe import Task, TaskTypes, StorageManager
    t = Task.create(project_name="demo", task_name="prep", task_type=TaskTypes.data_processing)
    t.set_parameters({"Args/lr": 0.1})
    t.upload_artifact("table", {"a": [1, 2]})

`import labpipe` loads only the error classes and the store's location; each other name loads its
module the first time it is used (`from labpipe import PipelineDecorator` loads the pipeline engine,
`from labpipe import Task` the task API only), so the CLI and short scripts start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import line_buffering as _line_buffering
from . import tracebacks as _tracebacks
from .config import set_store, store_path
from .errors import (
    ArtifactError,
    BlobCorrupted,
    DatasetError,
    IllegalTransition,
    InvalidName,
    LabpipeError,
    ParameterError,
    PipelineError,
    QueueError,
    StepFailed,
    StoreError,
    StoreTooNew,
    TaskNotFound,
)

__version__ = "0.1.0"

_tracebacks.install()  # an uncaught LabpipeError shows the user's frames only (see tracebacks.py)
_line_buffering.whole_lines_in_a_task()  # under a worker: lines stay whole in the task's console

#: the names loaded when first used, and the module each comes from
_LAZY = {
    "Dataset": "labpipe.dataset",
    "Logger": "labpipe.logger",
    "InputModel": "labpipe.models",
    "Model": "labpipe.models",
    "OutputModel": "labpipe.models",
    "PipelineController": "labpipe.pipeline.controller",
    "PipelineDecorator": "labpipe.pipeline.decorator",
    "StorageManager": "labpipe.storage",
    "Task": "labpipe.task",
    "TaskTypes": "labpipe.task_types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labpipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next use is a plain attribute read
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ArtifactError",
    "BlobCorrupted",
    "Dataset",
    "DatasetError",
    "IllegalTransition",
    "InputModel",
    "InvalidName",
    "LabpipeError",
    "Logger",
    "Model",
    "PipelineController",
    "PipelineDecorator",
    "OutputModel",
    "ParameterError",
    "PipelineError",
    "QueueError",
    "StepFailed",
    "StorageManager",
    "StoreError",
    "StoreTooNew",
    "Task",
    "TaskNotFound",
    "TaskTypes",
    "set_store",
    "store_path",
]
