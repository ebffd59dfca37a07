"""Store verbs for task rows: read-modify-write of a row in one transaction, tags, parameters."""

from __future__ import annotations

import multiprocessing

import pytest

from labpipe import Task, TaskNotFound
from labpipe.store import tasks
from labpipe.store.db import get_database


def _add_runtime_keys(i, barrier, task_id, n):
    db = get_database()
    barrier.wait()
    for j in range(n):
        tasks.modify_task(db, task_id, lambda row, key=f"p{i}_{j}", value=j: {"runtime": {**row.runtime, key: value}})


def test_runtime_keys_changed_from_four_processes_through_modify_task_are_all_kept():
    task = Task.create(task_name="runtime")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_add_runtime_keys, args=(i, barrier, task.id, 50)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert task.reload().data.runtime == {f"p{i}_{j}": j for i in range(4) for j in range(50)}


def test_modify_task_returns_the_new_row_and_a_failing_change_writes_nothing():
    db = get_database()
    task = Task.create(task_name="before", tags=["a"])
    row = tasks.modify_task(db, task.id, lambda r: {"name": r.name + " after", "tags": [*r.tags, "b"]})
    assert (row.name, row.tags) == ("before after", ["a", "b"])

    def broken(r):
        raise ValueError("the change itself failed")

    with pytest.raises(ValueError, match="the change itself failed"):
        tasks.modify_task(db, task.id, broken)
    with pytest.raises(ValueError, match="cannot set task field"):
        tasks.modify_task(db, task.id, lambda r: {"name": "x", "status": "completed"})
    assert task.reload().name == "before after" and task.status == "created"
    with pytest.raises(TaskNotFound, match="no task with id 'nope'"):
        tasks.modify_task(db, "nope", lambda r: {"name": "x"})


def test_edit_tags_adds_once_removes_and_keeps_the_order_and_the_archived_flag():
    db = get_database()
    task = Task.create(task_name="t", tags=["x", "y"])
    assert tasks.edit_tags(db, task.id, add=["z", "x", "z"]) == ["x", "y", "z"]
    assert tasks.edit_tags(db, task.id, add=["w"], remove=["y"]) == ["x", "z", "w"]
    assert tasks.edit_tags(db, task.id, add=["archived"], system=True) == ["archived"]
    row = tasks.get_task(db, task.id)
    assert row.system_tags == ["archived"] and row.archived and row.tags == ["x", "z", "w"]
    assert tasks.edit_tags(db, task.id, remove=["archived"], system=True) == []
    assert not tasks.get_task(db, task.id).archived
    with pytest.raises(TaskNotFound, match="no task with id 'nope'"):
        tasks.edit_tags(db, "nope", add=["x"])


def test_set_params_only_missing_keeps_a_value_already_there():
    db = get_database()
    task = Task.create(task_name="p")
    task.set_parameter("Args/lr", 0.5)
    tasks.set_params(db, task.id, [("Args", "lr", "0.1", "float", ""), ("Args", "epochs", "3", "int", "")], only_missing=True)
    assert task.get_parameters(cast=True) == {"Args/lr": 0.5, "Args/epochs": 3}
