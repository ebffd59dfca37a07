"""Every public name of ClearML's Task, PipelineController (and its Node), PipelineDecorator, Logger,
StorageManager, Dataset and Model / InputModel / OutputModel answers on labpipe's class: it works, or
it raises NotImplementedError naming the call and saying why it has no meaning offline. Never
AttributeError.

The names are data, read from ClearML's source by tools/clearml_surface.py into
tests/clearml_surface.json; a ClearML name labpipe lacks fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import labpipe
from labpipe import (
    Dataset,
    InputModel,
    Model,
    OutputModel,
    PipelineController,
    PipelineDecorator,
    StorageManager,
    Task,
)
from labpipe.offline import NO_OFFLINE_MEANING, READ_AS_ATTRIBUTE, OfflineName, labpipe_classes

ROOT = Path(__file__).resolve().parent.parent
SURFACE = json.loads((ROOT / "tests" / "clearml_surface.json").read_text())
CLASSES = SURFACE["classes"]
MIRROR = "/work/.mirror/allegroai+clearml/repo"


def instances(tmp_path) -> dict[str, list]:
    """For each class: the class, and the objects a ClearML script would hold of it."""
    task = Task.create(project_name="surface", task_name="t")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    out = OutputModel(task=task, name="net")
    out.update_weights(str(weights))
    return {
        "Task": [Task, task],
        "PipelineController": [PipelineController, PipelineController(name="pipe", project="surface")],
        "PipelineController.Node": [PipelineController.Node, PipelineController.Node(name="step")],
        "PipelineDecorator": [PipelineDecorator],
        "Logger": [labpipe.Logger, task.get_logger()],
        "StorageManager": [StorageManager, StorageManager()],
        "Dataset": [Dataset, Dataset.create(dataset_name="d", dataset_project="surface")],
        "Model": [Model, Model(out.id)],
        "InputModel": [InputModel, InputModel(model_id=out.id)],
        "OutputModel": [OutputModel, out],
    }


def stub_of(cls: type, name: str) -> OfflineName | None:
    """The OfflineName labpipe/offline.py installed for `name` on `cls`, if any."""
    value = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
    return value if isinstance(value, OfflineName) else None


def test_the_surface_lists_every_class_from_clearml_source():
    assert set(CLASSES) == set(labpipe_classes()) and len(SURFACE["clearml_commit"]) == 40
    assert sum(len(v) for v in CLASSES.values()) > 450
    # names ClearML's classes inherit from their ClearML bases are listed too
    assert {"get_task", "session", "log", "get_reported_scalars"} <= set(CLASSES["Task"])
    assert {"add_step", "get_pipeline_dag"} <= set(CLASSES["PipelineDecorator"])
    assert {"report_scalar", "get_metadata"} <= set(CLASSES["OutputModel"])


@pytest.mark.skipif(not os.path.isdir(MIRROR), reason="ClearML's source mirror is not on this machine")
def test_the_surface_is_what_the_tool_reads_from_clearml_source(tmp_path):
    out = tmp_path / "surface.json"
    subprocess.run([sys.executable, str(ROOT / "tools" / "clearml_surface.py"), "--rev", SURFACE["clearml_commit"],
                    "--out", str(out)], check=True, capture_output=True)
    assert json.loads(out.read_text()) == SURFACE


@pytest.mark.parametrize("owner", sorted(CLASSES))
def test_no_clearml_name_gives_attribute_error(owner, tmp_path):
    objects = instances(tmp_path)[owner]
    missing = []
    for name in CLASSES[owner]:
        for obj in objects:
            try:
                getattr(obj, name)
            except NotImplementedError:
                assert stub_of(objects[0], name) is not None, f"{owner}.{name} raised NotImplementedError but is no stub"
            except AttributeError as exc:
                if isinstance(obj, type) and any(name in vars(o) or name in getattr(type(o), "__dataclass_fields__", {})
                                                 for o in objects[1:]):
                    continue  # an instance attribute (Model.id, Node.name): it answers on the objects
                missing.append(f"{owner}.{name} on {obj!r}: {exc}")
    assert not missing, "ClearML names labpipe lacks:\n" + "\n".join(missing)


@pytest.mark.parametrize("owner", sorted(NO_OFFLINE_MEANING))
def test_unimplemented_names_raise_naming_the_call_and_why(owner, tmp_path):
    objects = instances(tmp_path)[owner]
    cls = objects[0]
    for name, reason in NO_OFFLINE_MEANING[owner].items():
        stub = stub_of(cls, name)
        assert stub is not None, f"{owner}.{name}: labpipe now implements it; delete its entry in labpipe/offline.py"
        assert len(reason) > 30, f"{owner}.{name}: say why it has no meaning offline, or what to use"
        for obj in objects:
            with pytest.raises(NotImplementedError) as info:
                value = getattr(obj, name)
                value("an argument", keyword=1)  # a method raises when called, an attribute when read
            message = str(info.value)
            assert message.startswith(f"{owner}.{name} is not available in labpipe: ") and message.endswith(reason)


def test_offline_table_holds_only_clearml_names():
    for owner, names in NO_OFFLINE_MEANING.items():
        assert set(names) <= set(CLASSES[owner]), f"{owner}: not ClearML names: {sorted(set(names) - set(CLASSES[owner]))}"


def test_stubs_raise_on_read_exactly_where_clearml_reads_an_attribute():
    for owner, names in NO_OFFLINE_MEANING.items():
        clearml_attributes = set(SURFACE["attributes"][owner]) & set(names)
        assert set(READ_AS_ATTRIBUTE.get(owner, ())) == clearml_attributes, owner


def test_a_value_set_on_a_stubbed_attribute_is_kept():
    node = PipelineController.Node(name="step")
    with pytest.raises(NotImplementedError, match=r"PipelineController.Node.draft is not available in labpipe: .*no draft steps"):
        _ = node.draft
    node.draft = True  # ClearML code may set it; labpipe keeps what was set
    assert node.draft is True and PipelineController.Node(name="other").status == "pending"


def test_clearml_class_attributes_have_clearml_values():
    assert Task.TaskStatusEnum.in_progress == "in_progress" and Task.TaskStatusEnum("completed") is Task.TaskStatusEnum.completed
    assert Task.TaskTypes.data_processing == "data_processing" and Task.archived_tag == "archived"
    assert issubclass(Task.DeleteError, Exception) and Task.NotSet is not None
    assert PipelineController.valid_job_status == PipelineDecorator.valid_job_status
    assert {"pending", "queued", "running", "completed", "cached", "failed", "aborted", "skipped"} == set(PipelineController.valid_job_status)
    assert PipelineDecorator.Node is PipelineController.Node


def test_pipeline_controller_tags_version_and_configuration():
    pipe = PipelineController(name="pipe", project="surface", version="2.0.1")
    assert pipe.tags == [] and pipe.version == "2.0.1"
    config = pipe.connect_configuration({"lr": 0.1}, name="hyper")
    assert config["lr"] == 0.1
    pipe.add_tags(["nightly"])
    assert pipe.tags == ["nightly"] and pipe.task.get_configuration_object_as_dict("hyper") == {"lr": 0.1}


def test_pipeline_decorator_finds_clones_and_enqueues_runs_as_the_controller_does():
    pipe = PipelineController(name="pipe", project="surface", version="1.0.0")
    pipe.add_parameter("x", 1)
    draft = pipe.create_draft()
    assert PipelineDecorator.get(pipeline_id=draft.id) == draft
    clone = PipelineDecorator.clone(draft, parameters={"x": 5})
    assert clone.get_parameter("Args/x") in (5, "5") and clone.id != draft.id
    assert PipelineDecorator.enqueue(clone, queue_name="services").get_status() == "queued"


def test_coverage_tool_counts_every_name(capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import clearml_surface
    finally:
        sys.path.remove(str(ROOT / "tools"))
    implemented, stubbed, total = clearml_surface.coverage(SURFACE)
    assert implemented + stubbed == total == sum(len(v) for v in CLASSES.values())
    assert stubbed == sum(len(v) for v in NO_OFFLINE_MEANING.values())
