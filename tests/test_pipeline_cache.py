"""Cached reruns: hits, archived tasks, forced refresh, content-addressed upstream results, golden keys."""

from __future__ import annotations

import pipeline_components as pc
import pytest

from labpipe import PipelineDecorator, Task
from labpipe.store import pipelines
from labpipe.store.db import get_database

pytestmark = pytest.mark.usefixtures("local_mode")


def _last_nodes():
    pipe = Task.get_tasks(task_filter={"type": ["controller"]})[0]
    return {n["name"]: n for n in pipelines.load_nodes(get_database(), pipe.id)}


def _step_tasks():
    return Task.get_tasks(task_filter={"type": ["training"]})


def test_second_run_is_served_entirely_from_the_cache():
    assert pc.chain_pipeline(n=4, bonus=1) == 7
    first = _last_nodes()
    assert pc.chain_pipeline(n=4, bonus=1) == 7
    second = _last_nodes()
    assert {n["status"] for n in second.values()} == {"cached"}
    assert {k: v["task"] for k, v in second.items()} == {k: v["task"] for k, v in first.items()}
    assert len(_step_tasks()) == 2  # no new step ran


def test_changed_argument_reruns_only_the_affected_steps():
    pc.chain_pipeline(n=4, bonus=1)
    pc.chain_pipeline(n=4, bonus=2)
    nodes = _last_nodes()
    assert nodes["make_numbers"]["status"] == "cached" and nodes["add_up"]["status"] == "completed"


def test_upstream_rerun_with_identical_bytes_still_hits_downstream():
    @PipelineDecorator.pipeline(name="salted", project="tests", version="1")
    def salted(salt):
        return int(pc.add_up(pc.make_numbers(3, salt=salt)))

    salted("a")
    salted("b")  # make_numbers reruns (new argument) but returns the same list
    nodes = _last_nodes()
    assert nodes["make_numbers"]["status"] == "completed" and nodes["add_up"]["status"] == "cached"


def test_archived_task_is_not_a_cache_hit():
    pc.chain_pipeline(n=4, bonus=1)
    for t in _step_tasks():
        t.archive()
    pc.chain_pipeline(n=4, bonus=1)
    assert {n["status"] for n in _last_nodes().values()} == {"completed"}


def test_refresh_reruns_named_steps_without_touching_code(monkeypatch):
    pc.chain_pipeline(n=4, bonus=1)
    PipelineDecorator.refresh_cache(["add_up"])
    pc.chain_pipeline(n=4, bonus=1)
    nodes = _last_nodes()
    assert nodes["make_numbers"]["status"] == "cached" and nodes["add_up"]["status"] == "completed"
    PipelineDecorator.refresh_cache(False)
    monkeypatch.setenv("LABPIPE_REFRESH", "all")
    pc.chain_pipeline(n=4, bonus=1)
    assert {n["status"] for n in _last_nodes().values()} == {"completed"}


def test_cached_task_whose_blob_is_gone_is_a_miss_not_an_error():
    import os

    pc.chain_pipeline(n=4, bonus=1)
    db = get_database()
    db.execute("DELETE FROM inline_blobs")
    for dirpath, _dirs, files in os.walk(db.blobs_dir):
        for f in files:
            os.unlink(os.path.join(dirpath, f))
    assert pc.chain_pipeline(n=4, bonus=1) == 7
    assert {n["status"] for n in _last_nodes().values()} == {"completed"}


def test_component_code_key_ignores_comments_and_docstrings_but_not_code(tmp_path):
    import importlib.util
    import sys

    def load(name, body):
        path = tmp_path / f"{name}.py"
        path.write_text("from labpipe import PipelineDecorator\n\n@PipelineDecorator.component(cache=True)\n" + body)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module.step

    base = load("v1", "def step(x):\n    return x + 1\n")
    commented = load("v2", "def step(x):\n    '''doc'''\n    # a comment\n    return x + 1  # same code\n")
    changed = load("v3", "def step(x):\n    return x + 2\n")
    assert base.code_key == commented.code_key != changed.code_key


def test_local_module_imported_by_a_component_is_part_of_its_cache_key(tmp_path):
    import importlib.util
    import sys

    (tmp_path / "helpermod.py").write_text("FACTOR = 2\n")
    path = tmp_path / "comp.py"
    path.write_text(
        "from labpipe import PipelineDecorator\n\n@PipelineDecorator.component(cache=True)\n"
        "def step(x):\n    import helpermod\n    return x * helpermod.FACTOR\n"
    )

    def key():
        spec = importlib.util.spec_from_file_location("comp", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["comp"] = module
        spec.loader.exec_module(module)
        return module.step.code_key

    before = key()
    (tmp_path / "helpermod.py").write_text("FACTOR = 3\n")
    assert key() != before


def test_component_cache_key_golden_value(tmp_path):
    """An innocent refactor must not silently invalidate every user's cache: this value is pinned."""
    import importlib.util

    from labpipe.hashing import args_key, cache_key

    (tmp_path / "gold.py").write_text(
        "from labpipe import PipelineDecorator\n\n@PipelineDecorator.component(return_values=['y'], cache=True)\n"
        "def step(x, scale=2):\n    import math\n    return math.floor(x * scale)\n"
    )
    spec = importlib.util.spec_from_file_location("gold", tmp_path / "gold.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.step.code_key == "2ab0f780edf8e0eaee6e1a689af65843"
    assert cache_key(module.step.code_key, args_key({"x": 1.5, "scale": 2})) == "bf8fd4e36769102ad9f6cd1dce68b8ae"
