"""The rest of ClearML's Task names that mean something offline: older aliases, progress, user
properties, requirements, projects and types, queues, iterations and models (labpipe/task.py's last section)."""

from __future__ import annotations

import pytest

from labpipe import OutputModel, Task, TaskNotFound


def test_progress_and_user_properties_are_kept_in_the_store():
    task = Task.create(project_name="p", task_name="t")
    assert task.get_progress() is None and task.get_user_properties() == {}
    task.set_progress(40)
    task.set_user_properties({"owner": "ana"}, [{"name": "gpu", "value": 1, "description": "cards"}], stage="dev")
    again = Task.get_task(task_id=task.id)  # another handle reads what this one wrote
    assert again.get_progress() == 40
    assert again.get_user_properties(value_only=True) == {"owner": "ana", "gpu": "1", "stage": "dev"}
    assert again.get_user_properties()["gpu"] == {"name": "gpu", "value": "1", "description": "cards"}
    again.delete_user_properties("owner", {"name": "stage"})
    assert task.get_user_properties(value_only=True) == {"gpu": "1"}
    with pytest.raises(ValueError, match=r"set_progress takes a percentage from 0 to 100, not 140"):
        task.set_progress(140)


def test_older_status_aliases_move_the_task_as_mark_does():
    task = Task.create(task_name="t")
    task.started()
    assert task.get_status() == Task.TaskStatusEnum.in_progress
    task.completed()
    assert task.get_status() == "completed" and task.flush() is True
    other = Task.create(task_name="o")
    other.stopped(status_message="enough")
    assert other.get_status() == "stopped" and other.get_status_message() == "enough"


def test_rename_move_and_retype_change_the_stored_task():
    task = Task.create(project_name="a", task_name="t")
    task.rename("t2")
    task.move_to_project(new_project_name="b")
    task.set_task_type(Task.TaskTypes.testing)
    stored = Task.get_task(task_id=task.id)
    assert (stored.name, stored.get_project_name(), stored.task_type) == ("t2", "b", "testing")
    task.set_project(project_name="c")
    assert Task.get_by_name("t2").project == "c"
    with pytest.raises(ValueError, match="unknown task_type 'robot'"):
        task.set_task_type("robot")
    with pytest.raises(TaskNotFound, match="no task named 'nope'"):
        Task.get_by_name("nope")


def test_query_tasks_returns_ids_or_chosen_fields():
    a = Task.create(project_name="q", task_name="a", tags=["x"])
    b = Task.create(project_name="q", task_name="b")
    Task.create(project_name="other", task_name="c")
    assert Task.query_tasks(project_name="q") == [b.id, a.id]
    assert Task.query_tasks(project_name="q", tags=["x"], additional_return_fields=["name", "status"]) == [
        {"id": a.id, "name": "a", "status": "created"}]
    assert Task.resolve_id(a) == a.id and Task.resolve_id("abc") == "abc" and Task.normalize_id(" ab ") == "ab"


def test_queue_numbers_and_the_executed_queue():
    task = Task.create(task_name="t")
    Task.enqueue(task, queue_name="gpu")
    assert Task.get_num_enqueued_tasks("gpu") == 1 and task.get_executed_queue() == "gpu"
    with pytest.raises(ValueError, match=r"no queue named 'cpu'; queues: default, gpu, services"):
        Task.get_num_enqueued_tasks("cpu")


def test_iterations_scalars_and_single_values():
    task = Task.create(task_name="t")
    assert task.get_last_iteration() == 0 and task.get_initial_iteration() == 0
    log = task.get_logger()
    for i in (1, 7, 3):
        log.report_scalar("loss", "train", value=1.0 / i, iteration=i)
    log.report_single_value("accuracy", 0.9)
    assert task.get_last_iteration() == 7
    assert task.get_all_reported_scalars()["loss"]["train"]["x"] == [1, 3, 7]
    assert task.get_reported_single_value("accuracy") == 0.9 and task.get_reported_single_value("f1") is None
    log.report_histogram("h", "s", [1, 2])
    assert [p["title"] for p in task.get_reported_plots()] == ["h"]


def test_requirements_packages_and_script():
    task = Task.create(task_name="t", script=__file__, packages=["numpy"])
    assert task.get_requirements() == {"pip": "numpy"}
    task.set_packages(["pandas>=2", "numpy"])
    assert Task.get_task(task_id=task.id).get_requirements()["pip"].splitlines() == ["pandas>=2", "numpy"]
    assert task.get_script()["entry_point"].endswith("test_task_surface.py")


def test_parameters_as_dict_round_trip():
    task = Task.create(task_name="t")
    task.set_parameters_as_dict({"Args": {"lr": 0.1, "epochs": 3}, "General": {"seed": 1}})
    assert {k: str(v) for k, v in task.get_parameters().items()} == {"Args/lr": "0.1", "Args/epochs": "3", "General/seed": "1"}
    with pytest.raises(ValueError, match=r"section 'Args' holds int"):
        task.set_parameters_as_dict({"Args": 3})


def test_models_ids_worker_and_loggers(tmp_path):
    task = Task.create(task_name="t")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"1")
    first = OutputModel(task=task, name="net")
    first.update_weights(str(weights))
    second = OutputModel(task=task, name="net")
    second.update_weights(str(weights))
    assert task.output_models_id == {"net": second.id} and task.input_models_id == {}
    assert [m.id for m in task.get_models()["output"]] == [first.id, second.id]
    assert task.task_id == task.id and task.last_worker is None and task.get_registered_artifacts() == {}
    assert type(task.logger).__name__ == "Logger" and task.log.name == "labpipe"
    assert not task.is_current_task() and Task.is_offline() is False
