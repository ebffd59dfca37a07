"""The Task API: create/get/filter, parameters with types, tags, archive, transitions, clone, queues, Task.init."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from labpipe import IllegalTransition, ParameterError, Task, TaskNotFound, TaskTypes


def test_issue_example_round_trips_parameters_and_artifact():
    t = Task.create(project_name="demo", task_name="prep", task_type=TaskTypes.data_processing)
    t.set_parameters({"Args/lr": 0.1, "Args/epochs": 3})
    t.upload_artifact("table", {"a": [1, 2]})
    again = Task.get_task(task_id=t.id)
    assert again.artifacts["table"].get() == {"a": [1, 2]}
    assert again.get_parameters(cast=True) == {"Args/lr": 0.1, "Args/epochs": 3}
    assert again.task_type == "data_processing" and again.project == "demo" and again.name == "prep"
    assert again.get_status() == "created"


def test_parameter_types_round_trip_in_sections():
    t = Task.create(task_name="p")
    values = {"Args/f": 0.5, "Args/i": 3, "Args/b": True, "Args/s": "x", "Args/n": None, "Args/l": [1, "a"],
              "Args/t": (1, 2), "Args/d": {"k": [1]}, "kwargs/x": 1, "plain": "general"}
    t.set_parameters(values)
    got = Task.get_task(task_id=t.id).get_parameters(cast=True)
    assert got.pop("General/plain") == "general"
    values.pop("plain")
    assert got == values
    assert type(got["Args/t"]) is tuple and type(got["Args/i"]) is int and type(got["Args/b"]) is bool
    nested = t.get_parameters_as_dict(cast=True)
    assert nested["Args"]["f"] == 0.5 and nested["kwargs"]["x"] == 1
    assert t.get_parameters(cast=False)["Args/i"] == "3"


def test_set_parameters_replaces_and_set_parameter_adds():
    t = Task.create(task_name="p")
    t.set_parameters({"Args/a": 1, "Args/b": 2})
    t.set_parameters({"Args/c": 3})
    assert t.get_parameters(cast=True) == {"Args/c": 3}
    t.set_parameter("Args/d", 4, description="four")
    t.update_parameters({"Args/c": 30})
    assert t.get_parameters(cast=True) == {"Args/c": 30, "Args/d": 4}
    assert t.get_parameter("Args/d", cast=True) == 4 and t.get_parameter("Args/zz", 9, cast=True) == 9


def test_bad_parameter_name_is_rejected():
    t = Task.create(task_name="p")
    with pytest.raises(ParameterError, match="Section/name"):
        t.set_parameter("Args/", 1)


def test_connect_records_locally_and_applies_overrides_when_run_remotely():
    t = Task.create(task_name="c")
    config = {"lr": 0.1, "epochs": 3}
    t.connect(config, name="Args")
    assert t.get_parameters(cast=True) == {"Args/lr": 0.1, "Args/epochs": 3}
    t.set_parameter("Args/epochs", "7")  # an override as a string, as from the CLI
    t._remote = True
    cfg = {"lr": 0.1, "epochs": 3}
    t.connect(cfg, name="Args")
    assert cfg == {"lr": 0.1, "epochs": 7}


def test_unknown_task_id_and_name_raise_task_not_found():
    with pytest.raises(TaskNotFound, match="nope"):
        Task.get_task(task_id="nope")
    with pytest.raises(TaskNotFound, match="'ghost' in project 'p'"):
        Task.get_task(project_name="p", task_name="ghost")


def test_get_task_by_name_returns_newest():
    Task.create(project_name="p", task_name="same")
    newest = Task.create(project_name="p", task_name="same")
    assert Task.get_task(project_name="p", task_name="same").id == newest.id


def test_get_tasks_filters():
    a = Task.create(project_name="p", task_name="a", task_type="training", tags=["x"])
    b = Task.create(project_name="p", task_name="b", task_type="testing", tags=["y"])
    c = Task.create(project_name="q", task_name="c")
    b.mark_completed()
    c.archive()
    assert {t.id for t in Task.get_tasks(project_name="p")} == {a.id, b.id}
    assert [t.id for t in Task.get_tasks(project_name="p", task_filter={"status": ["completed"]})] == [b.id]
    assert [t.id for t in Task.get_tasks(task_filter={"type": ["testing"]})] == [b.id]
    assert [t.id for t in Task.get_tasks(tags=["x"])] == [a.id]
    assert {t.id for t in Task.get_tasks(project_name="p", tags=["-x"])} == {b.id}
    assert c.id in {t.id for t in Task.get_tasks()}
    assert c.id not in {t.id for t in Task.get_tasks(allow_archived=False)}
    assert [t.id for t in Task.get_tasks(task_ids=[a.id])] == [a.id]


def test_tags_and_archive():
    t = Task.create(task_name="t")
    t.add_tags(["a", "b"])
    t.add_tags("a")
    assert t.get_tags() == ["a", "b"]
    t.archive()
    assert t.get_archived() and "archived" in t.get_system_tags()
    t.unarchive()
    assert not t.get_archived()


def test_status_transitions_are_checked_and_name_both_states():
    t = Task.create(task_name="t")
    t.mark_started()
    assert t.status == "in_progress" and t.data.started is not None
    t.mark_completed()
    assert t.get_status() == "completed" and t.data.completed is not None
    with pytest.raises(IllegalTransition, match="'completed' to 'in_progress'"):
        t.mark_started()
    t.publish()
    with pytest.raises(IllegalTransition, match="'published' to 'failed'"):
        t.mark_failed(status_reason="x")
    t.mark_failed(status_reason="forced", force=True)
    assert t.get_status() == "failed" and t.get_status_message() == "forced"


def test_clone_copies_definition_and_parameters_never_outputs():
    src = Task.create(project_name="p", task_name="src", task_type="qc", tags=["t"])
    src.set_parameters({"Args/x": 1})
    src.upload_artifact("a", 1)
    src.get_logger().report_scalar("loss", "train", 0.5, 1)
    src.mark_completed()
    src.archive()
    clone = Task.clone(src, name="copy")
    assert clone.name == "copy" and clone.project == "p" and clone.task_type == "qc" and clone.parent == src.id
    assert clone.get_status() == "created" and clone.get_parameters(cast=True) == {"Args/x": 1}
    assert clone.artifacts == {} and clone.get_reported_scalars() == {}
    assert clone.get_tags() == ["t"] and not clone.get_archived()
    with pytest.raises(TaskNotFound):
        Task.clone("missing")


def test_enqueue_and_dequeue():
    t = Task.create(task_name="q")
    Task.enqueue(t, queue_name="gpu")
    assert t.status == "queued" and t.data.queue == "gpu"
    assert Task.dequeue(t) and t.status == "created"
    assert not Task.dequeue(t)
    t.mark_started()
    with pytest.raises(IllegalTransition, match="cannot be enqueued"):
        Task.enqueue(t)


def test_task_init_completes_on_normal_exit_and_keeps_console(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        from labpipe import Task
        task = Task.init(project_name="proj", task_name="train")
        params = task.connect({"lr": 0.3}, name="Args")
        print("hello from the script", params["lr"])
    """))
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    t = Task.get_task(project_name="proj", task_name="train")
    assert t.get_status() == "completed"
    assert "hello from the script 0.3" in t.get_console()
    assert t.get_parameters(cast=True) == {"Args/lr": 0.3}
    assert t.data.script["entry_point"] == str(script)


def test_task_init_fails_with_traceback_on_uncaught_exception(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("from labpipe import Task\nTask.init(project_name='proj', task_name='bad')\nraise ValueError('boom 42')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "boom 42" in proc.stderr
    t = Task.get_task(project_name="proj", task_name="bad")
    assert t.get_status() == "failed"
    assert "ValueError: boom 42" in t.get_status_message()
    assert "Traceback" in t.get_console()


def test_task_init_in_process_returns_current_task_and_close_completes_it():
    t = Task.init(project_name="p", task_name="inproc", capture_output=False)
    assert Task.current_task() is t and Task.init() is t
    assert t.get_status() == "in_progress"
    t.close()
    assert t.get_status() == "completed" and Task.current_task() is None


def test_create_with_packages_true_records_the_scripts_imports_pinned(tmp_path):
    from importlib import metadata

    from labpipe.errors import LabpipeError

    script = tmp_path / "train.py"
    (tmp_path / "localhelper.py").write_text("X = 1\n")
    script.write_text("import os\nimport numpy as np\nimport localhelper\n\ndef main():\n    import yaml\n")
    req = tmp_path / "requirements.txt"
    req.write_text("# pinned by hand\npandas >= 1.0\n")
    task = Task.create(task_name="t", script=str(script), packages=True, requirements_file=req)
    assert task.data.script["packages"] == [f"numpy=={metadata.version('numpy')}", f"PyYAML=={metadata.version('PyYAML')}", "pandas>=1.0"]
    # a list is normalised; a single string is one requirement
    assert Task.create(script=str(script), packages=["numpy >= 1.0"]).data.script["packages"] == ["numpy>=1.0"]
    assert Task.create(script=str(script), packages="scikit-learn").data.script["packages"] == ["scikit-learn"]
    assert "packages" not in Task.create(script=str(script)).data.script
    with pytest.raises(ValueError, match=r"packages=True\) .* no script= was given"):
        Task.create(task_name="t", packages=True)
    with pytest.raises(LabpipeError, match="not a valid|packages\\[0\\]"):
        Task.create(script=str(script), packages=["numpy >>= 1"])


# -- edits from several processes at once: none is lost -----------------------------------------


def _in_processes(target, count: int, *args) -> None:
    """Run target(i, barrier, *args) in `count` forked processes that start their edits together."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(count)
    procs = [ctx.Process(target=target, args=(i, barrier, *args)) for i in range(count)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * count


def _add_tags(i, barrier, task_id, n):
    task = Task.get_task(task_id=task_id)
    barrier.wait()
    for j in range(n):
        task.add_tags(f"p{i}-t{j}")


def test_tags_added_from_four_processes_at_once_are_all_kept():
    task = Task.create(task_name="tagged", tags=["first"])
    _in_processes(_add_tags, 4, task.id, 50)
    tags = task.get_tags()
    assert len(tags) == 201 and len(set(tags)) == 201
    assert tags[0] == "first"
    assert set(tags) == {"first"} | {f"p{i}-t{j}" for i in range(4) for j in range(50)}
    assert [t for t in tags if t.startswith("p2-")] == [f"p2-t{j}" for j in range(50)]  # each process's order kept


def _archive_and_tag(i, barrier, task_id, n):
    task = Task.get_task(task_id=task_id)
    barrier.wait()
    for j in range(n):
        if i == 0:
            task.archive() if j % 2 == 0 else task.unarchive()
        else:
            task.add_tags(f"p{i}-t{j}")
    if i == 0:
        task.archive()


def test_archiving_while_other_processes_add_tags_loses_neither():
    task = Task.create(task_name="archived while tagged")
    _in_processes(_archive_and_tag, 3, task.id, 40)
    task.reload()
    assert task.get_archived() and task.get_system_tags() == ["archived"]
    assert len(task.get_tags()) == 80


def _set_parameters(i, barrier, task_id, n):
    task = Task.get_task(task_id=task_id)
    barrier.wait()
    for j in range(n):
        if j % 2:
            task.set_parameter(f"Args/p{i}_{j}", j)
        else:
            task.update_parameters({f"Args/p{i}_{j}": j, f"Shared/last_{i}": j})


def test_parameters_set_from_four_processes_at_once_are_all_kept():
    task = Task.create(task_name="tuned")
    task.set_parameters({"Args/kept": "yes"})
    _in_processes(_set_parameters, 4, task.id, 50)
    params = task.get_parameters(cast=True)
    assert params == {
        "Args/kept": "yes",
        **{f"Args/p{i}_{j}": j for i in range(4) for j in range(50)},
        **{f"Shared/last_{i}": 48 for i in range(4)},
    }


def _race_to_start_and_end(i, barrier, task_ids, wins):
    tasks = [Task.get_task(task_id=t) for t in task_ids]
    barrier.wait()
    for task in tasks:
        try:
            task.mark_started()
        except IllegalTransition:
            continue
        wins.put(("started", task.id, i))
    for task in tasks:
        try:
            task.mark_completed() if i % 2 else task.mark_stopped()
        except IllegalTransition:
            continue
        wins.put(("ended", task.id, i))


def test_status_transitions_racing_from_four_processes_have_one_winner_each():
    import multiprocessing

    wins = multiprocessing.get_context("fork").SimpleQueue()
    ids = [Task.create(task_name=f"raced {k}").id for k in range(40)]
    _in_processes(_race_to_start_and_end, 4, ids, wins)
    seen = []
    while not wins.empty():
        seen.append(wins.get())
    started = [task for what, task, _ in seen if what == "started"]
    ended = {task: by for what, task, by in seen if what == "ended"}
    assert sorted(started) == sorted(ids)  # each task started exactly once
    assert sorted(ended) == sorted(ids) and len([s for s in seen if s[0] == "ended"]) == len(ids)
    for task_id, by in ended.items():  # the status is the winner's, never overwritten by a loser
        assert Task.get_task(task_id=task_id).get_status() == ("completed" if by % 2 else "stopped")


def test_parameters_come_back_as_text_unless_cast_as_in_clearml():
    t = Task.create(task_name="text")
    t.set_parameters({"Args/lr": 0.1, "Args/n": 3, "Args/on": True, "Args/none": None, "Args/l": ["a", 1], "Args/d": {"k": 2}})
    assert t.get_parameters() == {"Args/lr": "0.1", "Args/n": "3", "Args/on": "True", "Args/none": "",
                                  "Args/l": '["a", 1]', "Args/d": '{"k": 2}'}
    assert t.get_parameter("Args/n") == "3" and t.get_parameter("Args/n", cast=True) == 3
    assert t.get_parameters_as_dict() == {"Args": t.get_parameters_as_dict(cast=False)["Args"]}
    assert t.get_parameters_as_dict()["Args"]["lr"] == "0.1" and t.get_parameters_as_dict(cast=True)["Args"]["lr"] == 0.1


def test_clearml_recipe_get_change_set_keeps_every_parameters_type():
    t = Task.create(task_name="recipe")
    t.set_parameters({"Args/lr": 0.1, "Args/n": 3, "Args/on": True, "Args/none": None, "Args/t": (1, 2), "Args/s": "x"})
    params = t.get_parameters()  # all text
    params["Args/lr"] = "0.5"  # an edit as text, as from a UI or a CLI
    t.set_parameters(params)
    assert t.get_parameters(cast=True) == {"Args/lr": 0.5, "Args/n": 3, "Args/on": True, "Args/none": None,
                                           "Args/t": (1, 2), "Args/s": "x"}
    t.update_parameters({"Args/n": "not a number"})  # text that is no int stays text, as ClearML keeps what was typed
    assert t.get_parameter("Args/n", cast=True) == "not a number"
    t.set_parameter("Args/k", "7", value_type=int)
    assert t.get_parameter("Args/k", cast=True) == 7


def test_execute_remotely_on_an_unknown_queue_is_a_value_error_naming_it_and_changes_nothing():
    task = Task.init(project_name="templates", task_name="nowhere", capture_output=False)
    try:
        with pytest.raises(ValueError, match=r"no queue named 'gpu-nobody-serves'.*labpipe agent --queue gpu-nobody-serves"):
            task.execute_remotely(queue_name="gpu-nobody-serves", clone=True, exit_process=False)
        assert task.reload().status == "in_progress" and Task.get_tasks(project_name="templates", task_name="nowhere") == [task]
    finally:
        task.close()
