"""Creating function tasks: what is stored (source, kwargs, references), and what is refused."""

from __future__ import annotations

import functools
import json
import os

import pytest

from labpipe import Task
from labpipe.function_task import ArtifactRef, FunctionSourceError, function_source


def _decorate(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


@_decorate
def decorated_step(x: int, scale: float = 2.0):
    """Scales x."""
    import math

    return math.floor(x * scale)


def helper(v):
    return v + 1


def uses_helper(v):
    return helper(v)


def takes_anything(data=None, table=None, flag=True, nums=(1, 2), conf=None):
    return data


class _Thing:
    def __init__(self, v):
        self.v = v


def test_source_is_stored_dedented_with_its_own_decorators_and_with_its_imports():
    # As ClearML does, a decorator of the project's own is applied again in the worker: its definition
    # (and the modules it names at module level) comes first, then the function decorated as written.
    task = Task.create_function_task(decorated_step, x=3)
    script = task.data.script
    assert script["kind"] == "function"
    assert script["function_name"] == "decorated_step"
    assert script["source"].startswith("import functools\n\ndef _decorate(func):")
    assert "\n@_decorate\ndef decorated_step(x: int, scale: float = 2.0):" in script["source"]
    assert script["imports"] == ["functools", "math"]
    assert script["working_dir"] == os.path.dirname(os.path.abspath(__file__))
    assert script["sys_path"] == [script["working_dir"]]
    assert script["return_values"] == ["return_object"]
    assert task.name == "decorated_step"


def test_nested_function_source_is_dedented():
    def inner(a):
        return a * 2

    assert function_source(inner).source.startswith("def inner(a):")


def test_helper_functions_sources_are_stored_beside_the_function():
    task = Task.create_function_task(uses_helper, helper_functions=[helper], v=1)
    assert task.data.script["helpers"] == ["def helper(v):\n    return v + 1\n"]


def test_basic_kwargs_become_typed_kwargs_parameters():
    task = Task.create_function_task(takes_anything, data=1.5, flag=False, nums=(1, 2), conf={"a": [1, "x", None]})
    params = task.get_parameters(cast=True)
    assert params == {"kwargs/data": 1.5, "kwargs/flag": False, "kwargs/nums": (1, 2), "kwargs/conf": {"a": [1, "x", None]}}


def test_non_basic_kwargs_are_stored_as_artifacts_of_the_task_and_referenced():
    np = pytest.importorskip("numpy")
    arr = np.arange(6).reshape(2, 3)
    task = Task.create_function_task(takes_anything, data=arr, table=_Thing(4))
    params = task.get_parameters(cast=True)
    assert params["kwargs_artifacts/data"] == {"task": task.id, "artifact": "kwarg.data"}
    assert params["kwargs_artifacts/table"] == {"task": task.id, "artifact": "kwarg.table"}
    assert not any(k.startswith("kwargs/") for k in params)
    assert (task.artifacts["kwarg.data"].get() == arr).all()
    assert task.artifacts["kwarg.table"].get().v == 4


def test_another_tasks_artifact_is_passed_as_a_reference_without_copying():
    source = Task.create(task_name="producer")
    source.upload_artifact("table", {"rows": 3})
    by_artifact = Task.create_function_task(takes_anything, data=source.artifacts["table"])
    by_ref = Task.create_function_task(takes_anything, data=ArtifactRef(source.id, "table"))
    for task in (by_artifact, by_ref):
        assert task.get_parameters(cast=True) == {"kwargs_artifacts/data": {"task": source.id, "artifact": "table"}}
        assert task.artifacts == {}


def test_options_are_recorded_on_the_task():
    task = Task.create_function_task(
        takes_anything, func_name="step_a", task_name="my step", project_name="proj", task_type="data_processing",
        return_values=["a", "b"], packages=["numpy>=1.0"], docker="python:3.11", tags=["t1"], retry_on_failure=2,
    )
    assert (task.name, task.project, task.task_type, task.get_tags()) == ("my step", "proj", "data_processing", ["t1"])
    script = task.data.script
    assert script["func_name"] == "step_a" and script["function_name"] == "takes_anything"
    assert script["return_values"] == ["a", "b"]
    assert script["packages"] == ["numpy>=1.0"]
    assert script["docker"] == "python:3.11"
    assert task.data.retries_left == 2


def test_packages_are_detected_from_the_functions_imports_when_not_given():
    pytest.importorskip("numpy")

    def needs_numpy():
        import numpy

        return numpy.zeros(1)

    packages = Task.create_function_task(needs_numpy).data.script["packages"]
    assert [p.split("==")[0].lower() for p in packages] == ["numpy"]


def test_caller_module_imports_are_remembered_for_the_error_hint():
    assert function_source(test_caller_module_imports_are_remembered_for_the_error_hint).caller_imports["json"] == "json"
    json.dumps(1)  # the name used above


def test_a_lambda_is_refused_naming_it_and_what_to_do():
    with pytest.raises(FunctionSourceError, match=r"lambda .*define it with `def` in a \.py file"):
        Task.create_function_task(lambda x: x)


def test_a_builtin_is_refused_naming_it():
    with pytest.raises(FunctionSourceError, match=r"'len'.*define it with `def`"):
        Task.create_function_task(len)


def test_a_function_without_source_is_refused_naming_it():
    namespace: dict = {}
    exec("def typed_in_a_repl(x):\n    return x\n", namespace)
    with pytest.raises(FunctionSourceError, match=r"typed_in_a_repl.*define it with `def`"):
        Task.create_function_task(namespace["typed_in_a_repl"])


def test_unknown_keyword_argument_is_refused_naming_it():
    with pytest.raises(TypeError, match="no parameter.*nope"):
        Task.create_function_task(helper, nope=1)


def test_return_values_must_be_distinct_names():
    with pytest.raises(ValueError, match="return_values"):
        Task.create_function_task(helper, return_values=["a", "a"], v=1)


def test_source_extraction_is_cached_per_function():
    assert function_source(decorated_step) is function_source(decorated_step)
