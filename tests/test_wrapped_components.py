"""A step function under the user's own decorators runs decorated, named after the function it wraps."""

from __future__ import annotations

import functools
import importlib.util
import textwrap

from labpipe import PipelineController, PipelineDecorator, Task
from labpipe.function_task import function_source, unwrap_decorated
from labpipe.pipeline.cache import StepCodeKey


def plus_one(func):
    def function_wrapper(*args, **kwargs):
        return func(*args, **kwargs) + 1
    return function_wrapper


def times(n):
    def decorate(func):
        @functools.wraps(func)  # `functools` is imported at this module's level: the worker gets it too
        def scaled(*args, **kwargs):
            return n * func(*args, **kwargs)
        return scaled
    return decorate


@PipelineDecorator.component(return_values=["value"])
@plus_one
def one():
    return 1


@PipelineDecorator.component(return_values=["value"])
@times(10)
@plus_one
def scaled_one(x):
    return x


@PipelineDecorator.pipeline(name="wrapped", project="wrapped", version="1.0.0")
def wrapped_pipeline():
    return one() + scaled_one(4)


def test_a_component_under_a_decorator_runs_decorated_and_is_named_after_its_function(local_mode):
    assert wrapped_pipeline() == 2 + 50
    names = {t.name for t in Task.get_tasks(project_name="wrapped") if t.task_type != "controller"}
    assert names == {"one", "scaled_one"}


def test_a_function_step_under_a_decorator_runs_decorated(stop_shared_pool):
    pipe = PipelineController(name="wrapped steps", project="wrapped", version="1.0.0")
    pipe.add_function_step(name="step", function=two, function_return=["value"])
    assert pipe.start_locally(run_pipeline_steps_locally=False) is not False
    [step] = [t for t in Task.get_tasks(project_name="wrapped") if t.name == "step"]
    assert step.artifacts["value"].get() == 3


@plus_one
def two():
    return 2


def test_the_worker_runs_the_decorators_definitions_and_the_function_decorated_as_written():
    src = function_source(scaled_one.func)
    assert src.name == "scaled_one"
    assert "import functools\n" in src.source
    assert "def plus_one(func):" in src.source and "def times(n):" in src.source
    assert "@times(10)\n@plus_one\ndef scaled_one(x):" in src.source
    assert "PipelineDecorator" not in src.source  # labpipe's own decorator is not applied again


def test_a_library_decorator_is_not_applied_again():
    @functools.cache
    def cached(x):
        return x

    inner, decorators = unwrap_decorated(cached)
    assert inner is cached.__wrapped__ and decorators == []


def test_a_closure_over_a_helper_is_not_taken_for_a_wrapper():
    def helper(x):
        return x

    def uses_helper(x):
        return helper(x)

    assert unwrap_decorated(uses_helper) == (uses_helper, [])
    assert function_source(uses_helper).name == "uses_helper"


def _load(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WRAPPED = """
    def deco(func):
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs) {op}
        return wrapper

    @deco
    def step():
        return 1
"""


def test_the_cache_key_of_a_wrapped_step_changes_with_its_decorators_code(tmp_path):
    a = _load(tmp_path, "wrapped_a", WRAPPED.format(op="+ 1"))
    b = _load(tmp_path, "wrapped_b", WRAPPED.format(op="* 2"))
    same = _load(tmp_path, "wrapped_c", WRAPPED.format(op="+ 1"))
    key = StepCodeKey(a.step).get()
    assert key != StepCodeKey(b.step).get()
    assert key == StepCodeKey(same.step).get()
