"""labpipe: ClearML-style ML pipelines on a laptop. One SQLite file, no server.

    from labpipe import Task, TaskTypes, StorageManager
    t = Task.create(project_name="demo", task_name="prep", task_type=TaskTypes.data_processing)
    t.set_parameters({"Args/lr": 0.1})
    t.upload_artifact("table", {"a": [1, 2]})
"""

from __future__ import annotations

from . import console as _console
from . import tracebacks as _tracebacks
from .config import set_store, store_path
from .dataset import Dataset
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
from .logger import Logger
from .models import InputModel, Model, OutputModel
from .pipeline.controller import PipelineController
from .pipeline.decorator import PipelineDecorator
from .storage import StorageManager
from .task import Task, TaskTypes

__version__ = "0.1.0"

_tracebacks.install()  # an uncaught LabpipeError shows the user's frames only (see tracebacks.py)
_console.whole_lines_in_a_task()  # under a worker: lines stay whole in the task's console

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

from .offline import install as _install_offline_names  # noqa: E402 - after every class it covers is defined

# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
_install_offline_names()
