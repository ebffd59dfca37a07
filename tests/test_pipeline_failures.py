"""The root cause first: a failed step's exception type, message and the user's own frames reach the
pipeline logic, and a step skipped because of it says so with that same cause."""

from __future__ import annotations

import inspect

import pytest

from labpipe import PipelineDecorator, StepFailed

pytestmark = pytest.mark.usefixtures("local_mode")


def checked(x):
    if x > 1:
        raise ValueError(f"x too big: {x}")
    return x


@PipelineDecorator.component(return_values=["y"], helper_functions=[checked])
def transform(x):
    return checked(x)


@PipelineDecorator.component(return_values=["z"])
def load(y):
    return y + 1


@PipelineDecorator.component(return_values=["n"])
def forgets_its_import(x):
    return math.sqrt(x)  # noqa: F821 - the import a component forgot: the point of the test


@PipelineDecorator.pipeline(name="root cause", project="failures", version="1")
def chain(x: int = 2):
    return load(transform(x)) + 0


@PipelineDecorator.pipeline(name="forgot import", project="failures", version="1")
def forgetful():
    return forgets_its_import(4) + 0


def _line_of(func, text: str) -> int:
    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_a_skipped_steps_error_carries_the_failing_steps_exception_and_frames():
    with pytest.raises(StepFailed) as info:
        chain(2)
    message = str(info.value)
    first = message.splitlines()[0]
    assert first.startswith("step 'transform' (task ") and first.endswith("failed: ValueError: x too big: 2")
    assert f'File "{__file__}", line {_line_of(transform, "return checked(x)")}, in transform' in message
    assert f'File "{__file__}", line {_line_of(checked, "raise ValueError")}, in checked' in message
    assert 'raise ValueError(f"x too big: {x}")' in message
    assert "step 'load' was skipped because of it" in message
    assert "labpipe/" not in message  # library frames are left out


def test_a_forgotten_import_inside_a_component_is_named_with_what_to_do():
    with pytest.raises(StepFailed) as info:
        forgetful()
    message = str(info.value)
    assert "step 'forgets_its_import'" in message and "NameError: name 'math' is not defined" in message
    assert "import it inside the function" in message or "add `import math` inside the function" in message
    assert f'line {_line_of(forgets_its_import, "math.sqrt")}, in forgets_its_import' in message


def test_a_failed_controller_run_says_its_root_cause_where_the_caller_sees_it(caplog):
    import pipeline_components as pc

    from labpipe import PipelineController

    pipe = PipelineController(name="loud failure", project="failures", version="1")
    pipe.add_function_step("bad", pc.failing)
    with pytest.raises(StepFailed) as raised:  # the run failed: the script must not go on as if it had not
        pipe.start_locally()
    assert "pipeline 'loud failure'" in str(raised.value) and ", in failing" in str(raised.value)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "pipeline 'loud failure'" in logged and "step 'bad' (task " in logged
    assert 'pipeline_components.py", line' in logged and ", in failing" in logged


@PipelineDecorator.component(return_values=["y"])
def explains_at_length(x):
    raise ValueError(f"bad value {x}\nthe second line says why\nthe third what to do")


@PipelineDecorator.pipeline(name="long message", project="failures", version="1")
def long_message():
    return explains_at_length(1) + 0


def test_a_multi_line_exception_message_is_kept_whole_and_listed_by_its_first_line():
    """The step's status message keeps every line of the message; the run's step list (labpipe show)
    shows its first line, the one that names the exception."""
    from labpipe import Task
    from labpipe.store import pipelines

    with pytest.raises(StepFailed, match=r"ValueError: bad value 1\nthe second line says why\nthe third what to do"):
        long_message()
    (step,) = [t for t in Task.get_tasks(project_name="failures") if t.name == "explains_at_length"]
    assert step.data.status_message == "ValueError: bad value 1\nthe second line says why\nthe third what to do"
    (run,) = [t for t in Task.get_tasks(project_name="failures") if t.task_type == "controller"]
    (node,) = pipelines.load_nodes(run.db, run.id)
    assert node["error"].splitlines()[0] == "ValueError: bad value 1"
