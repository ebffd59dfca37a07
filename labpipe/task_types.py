"""ClearML's task types, and the check that turns what a user passed into a stored type name."""

from __future__ import annotations

import enum
from typing import Any


class TaskTypes(enum.StrEnum):
    """ClearML's task types."""

    training = "training"
    testing = "testing"
    inference = "inference"
    data_processing = "data_processing"
    application = "application"
    monitor = "monitor"
    controller = "controller"
    optimizer = "optimizer"
    service = "service"
    qc = "qc"
    custom = "custom"


def task_type_name(task_type: Any) -> str:
    """The stored name of `task_type` (a TaskTypes member or its name; None is 'training').
    Raises ValueError listing the known types for anything else."""
    if task_type is None:
        return TaskTypes.training.value
    value = task_type.value if isinstance(task_type, TaskTypes) else str(task_type)
    if value not in TaskTypes.__members__:
        raise ValueError(f"unknown task_type {task_type!r}; expected one of {', '.join(TaskTypes.__members__)}")
    return value
