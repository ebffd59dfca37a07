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


def test_archiving_the_reused_task_reruns_the_step_even_when_an_older_twin_exists():
    pc.chain_pipeline(n=4, bonus=1)
    PipelineDecorator.refresh_cache(["add_up"])
    try:
        pc.chain_pipeline(n=4, bonus=1)  # a second completed add_up task with the same key
    finally:
        PipelineDecorator.refresh_cache(False)
    pc.chain_pipeline(n=4, bonus=1)
    reused = _last_nodes()["add_up"]
    assert reused["status"] == "cached"
    Task.get_task(task_id=reused["task"]).archive()
    pc.chain_pipeline(n=4, bonus=1)
    assert _last_nodes()["add_up"]["status"] == "completed"  # not served from the older twin


def test_refreshing_a_name_no_step_has_is_reported(caplog):
    import logging

    PipelineDecorator.refresh_cache(["add_upp"])
    try:
        with caplog.at_level(logging.WARNING, logger="labpipe"):
            pc.chain_pipeline(n=4, bonus=1)
    finally:
        PipelineDecorator.refresh_cache(False)
    assert "refresh asked for 'add_upp', but no step of this run has that name" in caplog.text
    assert "add_up, make_numbers" in caplog.text


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


# ------------------------------------------------------------ local modules: every one the step imports
#
# Each test below writes a small project to a temp folder and runs its pipeline twice on the local pool,
# editing a local module in between: the second run must run the step again, not serve the first result.
# The new constants differ in length from the old ones, so Python's own .pyc check (mtime in seconds and
# size) also sees the edit within one second.

COMPONENT_HEAD = "from labpipe import PipelineDecorator\n\n"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _load(path, name):
    """Import the file at `path` as module `name`, as a pipeline script's process imports its own files."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_local_module_imported_by_a_helper_function_is_part_of_the_cache_key(tmp_path):
    _write(tmp_path / "hmod.py", "K = 1\n")
    path = tmp_path / "helper_pipe.py"
    _write(path, COMPONENT_HEAD + (
        "def helper(x):\n    import hmod\n    return x + hmod.K\n\n\n"
        "@PipelineDecorator.component(return_values=['r'], cache=True, helper_functions=[helper])\n"
        "def comp(x: int):\n    return helper(x)\n\n\n"
        "@PipelineDecorator.pipeline(name='helper-import', project='tests', version='1')\n"
        "def main():\n    return int(comp(10))\n"
    ))
    assert _load(path, "helper_pipe_1").main() == 11
    _write(tmp_path / "hmod.py", "K = 20\n")
    # A fresh import of the script, as a new process would have: only the helper's module changed.
    assert _load(path, "helper_pipe_2").main() == 30
    assert _last_nodes()["comp"]["status"] == "completed"


PIPE_SCRIPT = """
from labpipe import PipelineDecorator
from comps.steps import comp

@PipelineDecorator.pipeline(name="subpackage", project="tests", version="1")
def main():
    return int(comp(10))

if __name__ == "__main__":
    PipelineDecorator.run_locally(workers=1)
    print("value", main())
"""


def test_module_beside_the_script_imported_by_a_component_in_a_subpackage_is_part_of_the_cache_key(tmp_path):
    import os
    import subprocess
    import sys

    project = tmp_path / "project"
    _write(project / "pipe.py", PIPE_SCRIPT)
    _write(project / "comps" / "__init__.py", "")
    _write(project / "comps" / "steps.py", COMPONENT_HEAD + (
        "@PipelineDecorator.component(return_values=['r'], cache=True)\n"
        "def comp(x: int):\n    import utils\n    return x + utils.K\n"
    ))
    _write(project / "utils.py", "K = 1\n")

    def run():
        # from elsewhere: neither the script's folder nor comps/ is the working directory
        proc = subprocess.run([sys.executable, str(project / "pipe.py")], cwd=tmp_path, env=dict(os.environ),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "value 11" in run()
    _write(project / "utils.py", "K = 20\n")
    assert "value 30" in run()
    assert _last_nodes()["comp"]["status"] == "completed"


def test_local_module_edited_between_two_runs_in_one_process_is_not_served_from_the_cache(tmp_path):
    _write(tmp_path / "nbmod.py", "K = 1\n")
    path = tmp_path / "notebook_pipe.py"
    _write(path, COMPONENT_HEAD + (
        "@PipelineDecorator.component(return_values=['r'], cache=True)\n"
        "def comp(x: int):\n    import nbmod\n    return x + nbmod.K\n\n\n"
        "@PipelineDecorator.pipeline(name='notebook', project='tests', version='1')\n"
        "def main():\n    return int(comp(10))\n"
    ))
    notebook = _load(path, "notebook_pipe")
    assert notebook.main() == 11
    assert notebook.main() == 11 and _last_nodes()["comp"]["status"] == "cached"
    _write(tmp_path / "nbmod.py", "K = 20\n")  # the same component objects, as in a notebook
    assert notebook.main() == 30
    assert _last_nodes()["comp"]["status"] == "completed"


def test_component_code_key_is_kept_until_a_file_it_read_changes(tmp_path, monkeypatch):
    import os

    from labpipe import source

    _write(tmp_path / "pkg" / "__init__.py", "")
    _write(tmp_path / "pkg" / "consts.py", "K = 1\n")
    path = tmp_path / "kept.py"
    _write(path, COMPONENT_HEAD + (
        "@PipelineDecorator.component(cache=True)\n"
        "def comp(x: int):\n    from pkg import consts\n    return x + consts.K\n"
    ))
    comp = _load(path, "kept").comp
    reads = []
    real = source.find_local_modules
    monkeypatch.setattr(source, "find_local_modules", lambda *a: reads.append(1) or real(*a))
    before = comp.code_key
    assert comp.code_key == before and len(reads) == 1  # nothing changed: no file is read again
    # The same size, in a folder whose own mtime does not move: only the file's mtime tells.
    consts = tmp_path / "pkg" / "consts.py"
    mtime = consts.stat().st_mtime_ns
    consts.write_text("K = 2\n")
    os.utime(consts, ns=(mtime + 10**9, mtime + 10**9))
    assert comp.code_key != before and len(reads) == 2


# -- a damaged blob heals: quarantined, then recomputed --------------------------------------


def _flip_payload_byte() -> str:
    """Flip one byte in the stored blob of make_payload's newest output; returns its hash."""
    from labpipe.store import blobs

    db = get_database()
    digest = db.query_one("SELECT a.hash FROM artifacts a JOIN tasks t ON t.id = a.task WHERE t.name = 'make_payload' "
                          "ORDER BY t.completed DESC LIMIT 1")[0]
    path = blobs.blob_path(db, digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    return digest


def _intact(digest: str) -> bool:
    from labpipe.store import blobs

    return blobs.verify(get_database(), digest)


def test_byte_flip_in_a_cached_input_reruns_its_step_before_the_reader_runs():
    import blob_components as bc

    assert bc.payload_pipeline(256, bonus=0) == 256 * 1024
    digest = _flip_payload_byte()
    assert bc.payload_pipeline(256, bonus=1) == 256 * 1024 + 1  # measure runs: it would read the flipped bytes
    nodes = _last_nodes()
    assert nodes["make_payload"]["status"] == "completed" and nodes["measure"]["status"] == "completed"
    assert _intact(digest) and list((get_database().root / "quarantine").iterdir())


def test_byte_flip_in_a_cached_value_the_logic_reads_reruns_the_step():
    import blob_components as bc

    assert bc.payload_direct(256) == 256 * 1024
    digest = _flip_payload_byte()
    assert bc.payload_direct(256) == 256 * 1024
    assert _last_nodes()["make_payload"]["status"] == "completed"
    assert _intact(digest)


def test_refreshing_a_step_heals_its_damaged_blob():
    import blob_components as bc

    bc.payload_pipeline(256)
    digest = _flip_payload_byte()
    PipelineDecorator.refresh_cache(["make_payload"])
    try:
        assert bc.payload_pipeline(256) == 256 * 1024
    finally:
        PipelineDecorator.refresh_cache(False)
    assert _last_nodes()["make_payload"]["status"] == "completed"
    assert _intact(digest)  # the identical bytes written again replaced the damaged file


def test_truncated_blob_is_a_cache_miss():
    import blob_components as bc

    from labpipe.store import blobs

    bc.payload_pipeline(256)
    db = get_database()
    digest = _flip_payload_byte()
    path = blobs.blob_path(db, digest)
    path.write_bytes(path.read_bytes()[:-10])
    assert bc.payload_pipeline(256) == 256 * 1024
    assert _last_nodes()["make_payload"]["status"] == "completed"  # the size check at lookup missed it
    assert _intact(digest)


def test_byte_flip_in_a_cached_value_passed_inside_a_list_reruns_its_step():
    import blob_components as bc

    assert bc.payload_nested(256, bonus=0) == 256 * 1024
    digest = _flip_payload_byte()
    assert bc.payload_nested(256, bonus=1) == 256 * 1024 + 1
    assert _last_nodes()["make_payload"]["status"] == "completed"
    assert _intact(digest)


# ------------------------------------------------------------ controller function steps: what the key covers


def _git(path, *args):
    import subprocess

    return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_a_function_step_on_another_branch_is_not_served_the_first_branchs_result(tmp_path, monkeypatch):
    """Two controller function steps that differ only by repo_branch run different checkouts: the
    second must run, not be served the first one's cached result."""
    import importlib.util

    from labpipe import PipelineController

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@t")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@t")
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "branchy.py").write_text("def read_data():\n    return open('data.txt').read()\n")
    (repo / "data.txt").write_text("from a")
    _git(repo, "init", "-q", "-b", "a")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "a")
    _git(repo, "checkout", "-q", "-b", "b")
    (repo / "data.txt").write_text("from b")
    _git(repo, "commit", "-q", "-am", "b")
    _git(repo, "checkout", "-q", "a")
    spec = importlib.util.spec_from_file_location("branchy", repo / "branchy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    results = {}
    for branch in ("a", "b"):
        pipe = PipelineController(name=f"on-{branch}", project="t", version="1")
        pipe.add_function_step("read", module.read_data, function_return=["text"], repo=str(repo),
                               repo_branch=branch, cache_executed_step=True)
        assert pipe.start_locally(run_pipeline_steps_locally=True) is True
        node = pipe.get_pipeline_dag()["read"]
        results[branch] = (node.status, Task.get_task(task_id=node.task_id).artifacts["text"].get())
    assert results == {"a": ("completed", "from a"), "b": ("completed", "from b")}


def test_controller_function_step_cache_key_golden_value(tmp_path):
    """The key a controller function step stores is pinned too (it differs from a component's: its
    settings name repo_branch only when set)."""
    import importlib.util

    from labpipe import PipelineController

    (tmp_path / "gold_ctl.py").write_text("def step(x, scale=2):\n    import math\n    return math.floor(x * scale)\n")
    spec = importlib.util.spec_from_file_location("gold_ctl", tmp_path / "gold_ctl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pipe = PipelineController(name="gold", project="t", version="1")
    pipe.add_function_step("step", module.step, function_kwargs={"x": 1.5, "scale": 2}, function_return=["y"],
                           cache_executed_step=True)
    assert pipe.start_locally(run_pipeline_steps_locally=True) is True
    step_task = Task.get_task(task_id=pipe.get_pipeline_dag()["step"].task_id)
    assert step_task.data.cache_key == "6060442e61a2af8cb63ffb54c6d40a12"


def test_a_task_step_stores_the_task_step_key_of_its_base_and_overrides():
    """A cloned-task step's key is `hashing.task_step_key` of the base task's definition and its
    parameters after the overrides: a second identical step is served from the cache, a changed
    override is not."""
    from labpipe import PipelineController
    from labpipe.hashing import task_step_key

    base = Task.create_function_task(pc.produce, task_name="base", project_name="t")
    keys, statuses = [], []
    for rows in (2, 2, 3):
        pipe = PipelineController(name="ts", project="t", version="1")
        pipe.add_step("prep", base_task_id=base.id, parameter_override={"kwargs/rows": rows}, cache_executed_step=True)
        assert pipe.start_locally(run_pipeline_steps_locally=True) is True
        node = pipe.get_pipeline_dag()["prep"]
        statuses.append(node.status)
        keys.append(Task.get_task(task_id=node.task_id).data.cache_key)
    params = dict(base.get_parameters(cast=True), **{"kwargs/rows": 2})
    assert keys[0] == task_step_key(base.data.script, params, {}, {}, base.data.type)
    assert statuses == ["completed", "cached", "completed"] and keys[0] == keys[1] != keys[2]


def test_refresh_requests_add_up_and_name_repeats_by_their_base_name():
    from labpipe.pipeline.cache import Refresh

    assert Refresh(False, None).covers("a") is False
    assert Refresh({"a"}, {"b"}).covers("b") and not Refresh({"a"}, {"b"}).covers("c")
    assert Refresh({"train"}).covers("train_2") and not Refresh({"train"}).covers("retrain")
    assert Refresh({"a"}, True).covers("anything")
    assert Refresh(True).record() is True and Refresh({"b", "a"}).record() == ["a", "b"] and Refresh().record() is None
    assert Refresh.recorded({"refresh": ["a"]}) == frozenset({"a"}) and Refresh.recorded({}) == frozenset()


def test_labpipe_refresh_in_the_environment_overrides_the_process_request(monkeypatch):
    from labpipe.pipeline.cache import request_refresh, requested_refresh

    request_refresh(["x"])
    assert requested_refresh() == frozenset({"x"})
    monkeypatch.setenv("LABPIPE_REFRESH", "all")
    assert requested_refresh() is True
    monkeypatch.setenv("LABPIPE_REFRESH", "a, b")
    assert requested_refresh() == frozenset({"a", "b"})
