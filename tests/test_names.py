"""Name rules (labpipe/names.py): refused where a name is created, before any row or file exists,
with a typed error naming the kind of thing, the name and the rule."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from labpipe import PipelineController, PipelineDecorator, Task
from labpipe.cli import main
from labpipe.contained import file_name_for
from labpipe.errors import InvalidName, LabpipeError
from labpipe.models import OutputModel
from labpipe.names import (
    MAX_LABEL,
    MAX_NAME,
    check_artifact_name,
    check_label,
    check_queue_name,
    check_step_name,
)
from labpipe.store import tasks
from labpipe.store.db import get_database

BAD_ARTIFACT_NAMES = ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "a\0b", "a\nb", "a\x7fb", "x" * (MAX_NAME + 1),
                      "x" * 5000, "a\ud800", 3, None]


def _task_count() -> int:
    return len(tasks.find_tasks(get_database(), include_archived=True, limit=100_000))


def step_fn(x: int = 1):
    return x


@pytest.mark.parametrize("name", BAD_ARTIFACT_NAMES)
def test_bad_artifact_names_are_refused_with_a_typed_error_naming_the_rule(name):
    with pytest.raises(InvalidName) as err:
        check_artifact_name(name)
    assert isinstance(err.value, ValueError) and isinstance(err.value, LabpipeError)
    assert "artifact name" in str(err.value) and "is not valid:" in str(err.value)
    assert len(str(err.value)) < 300  # a 5,000-character name is shown shortened


def test_unusual_but_harmless_artifact_names_are_accepted():
    for name in ("a b", "ünïcødé", "kwarg.x", "..a", "a..", ".hidden", "x" * MAX_NAME, "${x}", "日本"):
        assert check_artifact_name(name) == name


def test_artifact_name_with_dotdot_is_refused_and_nothing_is_stored(store):
    task = Task.create(task_name="t")
    with pytest.raises(InvalidName, match=r"artifact name '\.\./x' is not valid: it must not contain '/'"):
        task.upload_artifact("../x", [1, 2])
    with pytest.raises(InvalidName, match="NUL byte"):
        task.upload_artifact("a\0b", [1, 2])
    assert task.artifacts == {}
    assert not (store / "cache").exists()


def test_five_thousand_character_names_are_one_short_clear_error():
    task = Task.create(task_name="t")
    with pytest.raises(InvalidName) as err:
        task.upload_artifact("x" * 5000, 1)
    assert "at most 255 characters, not 5000" in str(err.value) and len(str(err.value)) < 250


def test_component_with_a_climbing_return_value_is_refused_at_decoration_naming_the_step():
    with pytest.raises(InvalidName, match=r"step 'make': return value name '\.\./x' is not valid"):
        PipelineDecorator.component(return_values=["../x"], name="make")(step_fn)
    with pytest.raises(InvalidName, match="step name 'a/b'"):
        PipelineDecorator.component(name="a/b")(step_fn)
    with pytest.raises(InvalidName, match="queue name ''"):
        PipelineDecorator.component(execution_queue="")(step_fn)
    assert _task_count() == 0


def test_pipeline_decorator_refuses_bad_names_at_decoration():
    with pytest.raises(InvalidName, match="pipeline 'p': artifact name 'a/b'"):
        PipelineDecorator.pipeline(name="p", project="x", version="1", return_value="a/b")
    with pytest.raises(InvalidName, match="project name"):
        PipelineDecorator.pipeline(name="p", project="x\0", version="1")
    with pytest.raises(InvalidName, match="queue name ' services'"):
        PipelineDecorator.pipeline(name="p", project="x", version="1", pipeline_execution_queue=" services")


def test_controller_refuses_bad_step_return_and_queue_names_before_anything_runs():
    pipe = PipelineController(name="ctl", project="t", version="1")
    with pytest.raises(InvalidName, match=r"step name 'a\.b'.*must not contain '\.'"):
        pipe.add_function_step("a.b", step_fn)
    with pytest.raises(InvalidName, match="step 'a': return value name '..'"):
        pipe.add_function_step("a", step_fn, function_return=[".."])
    with pytest.raises(InvalidName, match="step 'a': queue name"):
        pipe.add_function_step("a", step_fn, execution_queue="q\n")
    pipe.add_function_step("a", step_fn, execution_queue="${pipeline.queue}")  # a reference: checked once resolved
    with pytest.raises(InvalidName, match="step name"):
        pipe.add_step("../up", base_task_id="whatever")
    with pytest.raises(InvalidName, match="queue name ''"):
        pipe.start(queue="")
    with pytest.raises(InvalidName, match="queue name"):
        pipe.set_default_execution_queue("\0")
    with pytest.raises(InvalidName, match="project name"):
        PipelineController(name="ctl", project="x" * (MAX_LABEL + 1))
    assert _task_count() == 0


def test_function_task_names_are_checked_before_the_task_exists():
    with pytest.raises(InvalidName, match=r"function task 'step_fn': return value name 'a/b'"):
        Task.create_function_task(step_fn, return_values=["ok", "a/b"])
    with pytest.raises(InvalidName, match="task name"):
        Task.create_function_task(step_fn, task_name="t\0")

    def takes_any(**kw):
        return kw

    with pytest.raises(InvalidName, match=r"argument '/x'"):
        Task.create_function_task(takes_any, **{"/x": object.__new__(type("Big", (), {}))})
    assert _task_count() == 0


def test_task_and_project_names_are_lenient_labels_but_not_control_characters_or_absurd():
    task = Task.create(project_name="team/a ../b", task_name="run 1/2 ../3")
    assert task.name == "run 1/2 ../3" and task.project == "team/a ../b"
    for kwargs in ({"task_name": "a\0b"}, {"project_name": "a\x1bb"}, {"task_name": "x" * (MAX_LABEL + 1)}):
        with pytest.raises(InvalidName):
            Task.create(**kwargs)
    with pytest.raises(InvalidName, match="task name ''"):
        task.set_name("")
    with pytest.raises(InvalidName, match="task name"):
        Task.clone(task, name="\0")
    assert _task_count() == 1


def test_model_names_are_labels():
    task = Task.create(task_name="t")
    with pytest.raises(InvalidName, match="model name"):
        OutputModel(task=task, name="w\0")
    assert OutputModel(task=task, name="weights/v1 ../x").name == "weights/v1 ../x"


def test_enqueue_refuses_a_bad_queue_name_and_leaves_the_task_created():
    task = Task.create(task_name="t")
    for bad in ("", "  ", " default", "q\0", "q\n", "x" * 256):
        with pytest.raises(InvalidName, match="queue name"):
            Task.enqueue(task, queue_name=bad)
    assert task.reload().status == "created"
    Task.enqueue(task, queue_name="odd/queue name")  # labels, not paths: the wake-up FIFO's name is hashed
    assert task.reload().status == "queued"


def test_cli_refuses_bad_queue_and_clone_names_in_one_line_creating_nothing(store):
    task = Task.create(task_name="t")
    for args in (["clone", task.id, "--enqueue", "q\0"], ["clone", task.id, "--name", "a\x07"], ["agent", "--queue", "q\n"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("labpipe: ") and "is not valid" in result.output and "Traceback" not in result.output
    assert _task_count() == 1


def test_cli_artifact_with_a_nul_or_five_thousand_character_name_is_one_line():
    task = Task.create(task_name="t")
    task.upload_artifact("table", [1])
    for name in ("a\0b", "x" * 5000):
        result = CliRunner().invoke(main, ["artifact", task.id, name, "-o", "-"])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a clean exit, no exception
        assert "has no artifact" in result.output and len(result.output) < 400 and "Traceback" not in result.output
    for output in ("x" * 5000, "y" * 300 + "/z"):  # -o paths the filesystem cannot take: one line too
        result = CliRunner().invoke(main, ["artifact", task.id, "table", "-o", output])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert result.output.startswith("labpipe: cannot write")


@settings(max_examples=200, deadline=None, database=None)  # no .hypothesis folder in the checkout
@given(st.text(max_size=300))
def test_any_text_is_either_a_valid_name_or_a_typed_refusal(name):
    for check in (check_artifact_name, check_step_name, check_queue_name,
                  lambda n: check_label(n, kind="task")):
        try:
            assert check(name) == name
        except InvalidName as exc:
            assert "is not valid:" in str(exc)


@settings(max_examples=200, deadline=None, database=None)  # no .hypothesis folder in the checkout
@given(st.text(max_size=400), st.sampled_from(["", ".pkl", ".npy", ".zip"]))
def test_file_name_for_is_always_one_safe_path_component(name, suffix):
    safe = file_name_for(name, suffix, fallback="h" * 32)
    assert "/" not in safe and "\\" not in safe and "\0" not in safe and safe not in ("", ".", "..")
    assert len(safe.encode("utf-8")) <= 255 and safe.endswith(suffix)
    try:
        check_artifact_name(name)
    except InvalidName:
        return
    if len((name + suffix).encode("utf-8")) <= 255:
        assert safe == name + suffix  # a valid name keeps its file name (table -> table.pkl)


def test_a_monitor_artifacts_target_is_an_artifact_name_checked_at_declaration():
    with pytest.raises(InvalidName, match=r"step 'step_fn': monitor_artifacts: artifact name '\.\./up'"):
        PipelineDecorator.component(monitor_artifacts=[("return_object", "../up")])(step_fn)
    with pytest.raises(InvalidName, match=r"step 'a': monitor_artifacts: artifact name 'x/y'"):
        PipelineController(name="ctl", project="t", version="1").add_function_step("a", step_fn, monitor_artifacts=["x/y"])
