"""Task.connect (write-through dicts and objects), configurations, add_requirements, running_locally,
is_main_task, and clone's parent, as ClearML's scripts use them."""

from __future__ import annotations

import argparse
import pickle

import pytest

from labpipe import Task
from labpipe.agent.pool import Pool

WAIT = 60


def test_values_assigned_after_connect_are_recorded():
    t = Task.create(task_name="connect")
    config = t.connect({"lr": 0.1, "layers": [1, 2]}, name="Args")
    config["lr"] = 0.2
    config.update(epochs=5)
    config.setdefault("seed", 7)
    del config["layers"]
    assert t.get_parameters(cast=True) == {"Args/lr": 0.2, "Args/epochs": 5, "Args/seed": 7}
    assert pickle.loads(pickle.dumps(config)) == {"lr": 0.2, "epochs": 5, "seed": 7}
    assert type(pickle.loads(pickle.dumps(config))) is dict


def test_attributes_assigned_after_connecting_a_namespace_or_object_are_recorded():
    class Settings:
        def __init__(self):
            self.batch = 32

    t = Task.create(task_name="objects")
    args = t.connect(argparse.Namespace(lr=0.1), name="Args")
    args.lr = 0.5
    settings = t.connect(Settings(), name="Settings")
    settings.batch = 64
    settings._private = "not a parameter"
    assert t.get_parameters(cast=True) == {"Args/lr": 0.5, "Settings/batch": 64}
    assert isinstance(settings, Settings) and type(pickle.loads(pickle.dumps(args))) is argparse.Namespace


SCRIPT = """
from labpipe import Task
task = Task.init(project_name="p", task_name="cfg")
params = task.connect({"lr": 0.1, "note": "base"})
params["seen"] = params["lr"] * 10
config = task.connect_configuration({"depth": 2, "act": "relu"}, name="model")
path = task.connect_configuration(CFG, name="file")
task.upload_artifact("seen", {"params": dict(params), "config": dict(config), "file": open(path).read(),
                              "local": Task.running_locally(), "main": task.is_main_task()})
"""


def test_a_clones_overrides_reach_connect_and_connect_configuration_under_a_worker(tmp_path, stop_shared_pool):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("epochs: 3\n")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.replace("CFG", repr(str(cfg))))
    base = Task.create(project_name="p", task_name="cfg", script=str(script))
    clone = Task.clone(base)
    clone.set_parameter("General/lr", 0.5)
    clone.set_configuration_object("model", config_dict={"depth": 8, "act": "gelu"})
    clone.set_configuration_object("file", config_text="epochs: 30\n")
    with Pool({"default": 1}):
        Task.enqueue(clone, queue_name="default")
        clone.wait_for_status(timeout=WAIT)
    seen = clone.artifacts["seen"].get()
    assert seen["params"] == {"lr": 0.5, "note": "base", "seen": 5.0}
    assert seen["config"] == {"depth": 8, "act": "gelu"} and seen["file"] == "epochs: 30\n"
    assert seen["local"] is False and seen["main"] is True
    assert clone.get_parameter("General/seen", cast=True) == 5.0  # assigned after connect, on the worker
    assert cfg.read_text() == "epochs: 3\n"  # the user's file is never overwritten


def test_configurations_read_back_as_text_and_dicts(tmp_path):
    t = Task.create(task_name="configs")
    conf = t.connect_configuration({"a": 1}, name="model", description="the net")
    conf["b"] = 2
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text("rows: 10\nsplit: [0.8, 0.2]\n")
    assert t.connect_configuration(yaml_file, name="data") == yaml_file
    assert t.get_configuration_object_as_dict("model") == {"a": 1, "b": 2}
    assert t.get_configuration_object_as_dict("data") == {"rows": 10, "split": [0.8, 0.2]}
    assert t.get_configuration_object("data") == "rows: 10\nsplit: [0.8, 0.2]\n"
    assert t.get_configurations()["data"]["type"] == "yaml" and t.get_configurations()["model"]["description"] == "the net"
    assert set(t.get_configuration_objects()) == {"model", "data"} and t.get_configuration_object("none") is None
    assert Task.clone(t).get_configuration_object_as_dict("model") == {"a": 1, "b": 2}


@pytest.mark.parametrize(("call", "message"), [
    (lambda t: t.connect_configuration("/no/such/file.yaml"), "no such file"),
    (lambda t: t.connect_configuration(42), "give a dict, a list, or the path"),
    (lambda t: t.set_configuration_object("x"), "give config_text= or config_dict="),
    (lambda t: t.set_configuration_object("x", config_dict={"f": object()}), "must be JSON-like"),
])
def test_bad_configurations_are_refused_naming_them(call, message):
    t = Task.create(task_name="bad")
    with pytest.raises(ValueError, match=message):
        call(t)
    assert t.get_configurations() == {}


def test_add_requirements_are_recorded_on_the_next_task_init_task(tmp_path):
    Task._added_requirements = []
    try:
        Task.add_requirements("pandas", ">=2")
        Task.add_requirements("numpy", "2.0.0")
        req = tmp_path / "requirements.txt"
        req.write_text("scikit-learn>=1.3\n")
        Task.add_requirements(str(req))
        with pytest.raises(Exception, match="not a valid requirement|invalid"):
            Task.add_requirements("not a package name!!")
        t = Task.init(project_name="p", task_name="reqs", capture_output=False)
        try:
            assert t.data.script["packages"] == ["pandas>=2", "numpy==2.0.0", "scikit-learn>=1.3"]
        finally:
            t.close()
    finally:
        Task._added_requirements = []


def test_running_locally_and_is_main_task_here():
    assert Task.running_locally() is True
    other = Task.create(task_name="not main")
    assert not other.is_main_task()
    main = Task.init(project_name="p", task_name="main", capture_output=False)
    try:
        assert main.is_main_task() and not other.is_main_task()
    finally:
        main.close()


def test_clone_parent_follows_clearml_default():
    top = Task.create(task_name="top")
    child = Task.create(task_name="child")
    child.set_parent(top)
    assert Task.clone(top).parent == top.id  # no parent: the source itself
    assert Task.clone(child).parent == top.id  # the source's parent
    assert Task.clone(child, parent=child).parent == child.id
