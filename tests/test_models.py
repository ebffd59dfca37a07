"""Models: Model(id), Model.query_models, InputModel (connected, overridden in a clone), OutputModel
(base_model_id, design and labels, connect)."""

from __future__ import annotations

import pytest

from labpipe import ArtifactError, InputModel, Model, OutputModel, Task


def _model(tmp_path, task_name="train", name="net", project="models", data=b"weights", **kw):
    task = Task.create(project_name=project, task_name=task_name)
    path = tmp_path / f"{task_name}-{name}.bin"
    path.write_bytes(data)
    out = OutputModel(task=task, name=name, **kw)
    out.update_weights(str(path))
    return task, out


def test_model_by_id_holds_what_the_output_model_stored(tmp_path):
    task, out = _model(tmp_path, framework="PyTorch", config_dict={"layers": 3}, label_enumeration={"cat": 0, "dog": 1},
                       comment="first try")
    model = Model(out.id)
    assert (model.name, model.task, model.project, model.framework) == ("net", task.id, "models", "PyTorch")
    assert model.config_dict == {"layers": 3} and model.labels == {"cat": 0, "dog": 1} and model.comment == "first try"
    assert open(model.get_local_copy(), "rb").read() == b"weights" and model.url.startswith("labpipe://")
    with pytest.raises(ArtifactError, match="no model with id 'nope'"):
        Model("nope")


def test_query_models_filters_like_clearml(tmp_path):
    _, a = _model(tmp_path, "a", tags=["best", "prod"])
    _, b = _model(tmp_path, "b", tags=["best"])
    _, c = _model(tmp_path, "c", name="other", tags=["qa"], project="elsewhere")
    ids = lambda models: [m.id for m in models]  # noqa: E731
    assert ids(Model.query_models(project_name="models")) == [b.id, a.id]  # newest first
    assert ids(Model.query_models(model_name="other")) == [c.id]
    assert ids(Model.query_models(tags=["prod", "qa"])) == [c.id, a.id]  # OR
    assert ids(Model.query_models(tags=["best", "-prod"])) == [b.id]
    assert ids(Model.query_models(tags=["__$all", "best", "prod"])) == [a.id]  # AND
    assert ids(Model.query_models(max_results=1)) == [c.id]
    Model(a.id).publish()
    assert ids(Model.query_models(only_published=True)) == [a.id] and a.published
    Task.get_task(task_id=Model(c.id).task).archive()
    assert c.id not in ids(Model.query_models()) and c.id in ids(Model.query_models(include_archived=True))


def test_input_model_by_name_connected_to_a_task_is_listed_and_kept_by_a_clone(tmp_path):
    _, out = _model(tmp_path)
    user = Task.create(project_name="models", task_name="eval")
    model = InputModel(name="net", project="models")
    assert model.id == out.id and open(model.get_weights(), "rb").read() == b"weights"
    assert user.connect(model) is model
    assert [m.id for m in user.models["input"]] == [out.id]
    clone = Task.clone(user)
    assert clone.input_model_ids() == {"net": out.id}
    with pytest.raises(ArtifactError, match="no model matches name='missing'"):
        InputModel(name="missing")


def test_a_clone_pointing_its_input_model_elsewhere_gives_the_script_that_model(tmp_path, stop_shared_pool):
    from labpipe.agent.pool import Pool

    _, old = _model(tmp_path, "v1", data=b"old weights")
    _, new = _model(tmp_path, "v2", data=b"new weights")
    script = tmp_path / "evaluate.py"
    script.write_text(
        "from labpipe import InputModel, Task\n"
        "task = Task.init(project_name='models', task_name='evaluate')\n"
        f"model = InputModel(model_id={old.id!r})\n"
        "task.connect(model, name='net')\n"
        "task.upload_artifact('used', open(model.get_local_copy(), 'rb').read())\n"
    )
    base = Task.create(project_name="models", task_name="evaluate", script=str(script))
    base.set_input_model_id("net", old.id)
    clone = Task.clone(base)
    clone.set_input_model_id("net", new.id)
    with Pool(queues={"default": 1}):
        for t in (base, clone):
            Task.enqueue(t, queue_name="default")
        for t in (base, clone):
            t.wait_for_status(timeout=60)
    assert base.artifacts["used"].get() == b"old weights"
    assert clone.artifacts["used"].get() == b"new weights"


def test_output_model_from_a_base_model_starts_with_its_weights_and_design(tmp_path):
    _, base = _model(tmp_path, config_dict={"lr": 0.1}, label_enumeration={"a": 0}, framework="Keras")
    task = Task.create(task_name="finetune")
    tuned = OutputModel(task=task, name="tuned", base_model_id=base.id)
    copy = Model(tuned.id)
    assert copy.hash == Model(base.id).hash and copy.framework == "Keras" and copy.config_dict == {"lr": 0.1}
    assert copy.metadata["base_model_id"] == base.id and copy.labels == {"a": 0}
    (tmp_path / "new.bin").write_bytes(b"tuned weights")
    tuned.update_weights(str(tmp_path / "new.bin"))
    assert open(Model(tuned.id).get_local_copy(), "rb").read() == b"tuned weights"
    assert [m.name for m in task.models["output"]] == ["tuned"]
    with pytest.raises(ArtifactError, match=r"base_model_id='nope'\): no such model"):
        OutputModel(task=task, base_model_id="nope")


def test_output_model_design_labels_and_connect(tmp_path):
    task, out = _model(tmp_path)
    out.update_design(config_text="layers: 3\n")
    out.update_labels({"x": 1})
    model = Model(out.id)
    assert model.config_text == "layers: 3\n" and model.labels == {"x": 1} and model.config_dict == {}
    out.connect(task, name="renamed")
    assert [m.name for m in task.models["output"]] == ["renamed"]
    with pytest.raises(ArtifactError, match="cannot be connected to task"):
        out.connect(Task.create(task_name="other"))
    with pytest.raises(ArtifactError, match="config_text= or config_dict=, not both"):
        OutputModel(task=task, config_text="a", config_dict={"a": 1})


def test_model_metadata_is_kept_with_its_type_and_read_back_cast(tmp_path):
    task, out = _model(tmp_path)
    out.set_metadata("epochs", 12)
    out.set_metadata("ratio", "0.25", v_type=float)
    out.set_metadata("frozen", True)
    model = Model(out.id)  # another handle reads what the output model stored
    assert model.get_metadata("epochs") == "12" and model.get_metadata_casted("epochs") == 12
    assert model.get_all_metadata()["ratio"] == {"key": "ratio", "type": "float", "value": "0.25"}
    assert model.get_all_metadata_casted() == {"epochs": 12, "ratio": 0.25, "frozen": True}
    model.set_all_metadata({"stage": {"type": "str", "value": "prod"}})
    assert InputModel(model_id=out.id).get_all_metadata_casted() == {"stage": "prod"} and model.get_metadata("epochs") is None
    assert model.config_dict == {} and model.comment == ""  # the rest of the model's record is untouched
    with pytest.raises(ValueError, match="model metadata keys are non-empty strings"):
        model.set_metadata("", 1)


def test_output_model_metadata_set_before_its_weights_is_stored_with_them(tmp_path):
    task = Task.create(project_name="models", task_name="early")
    out = OutputModel(task=task, name="net")
    out.set_metadata("dataset", "v3")
    with pytest.raises(ArtifactError, match=r"OutputModel.get_weights: model 'net' has no weights yet; call update_weights\(\) first"):
        out.get_weights()
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    out.update_weights(str(path))
    out.wait_for_uploads()
    assert Model(out.id).get_metadata("dataset") == "v3" and open(out.get_weights(), "rb").read() == b"abc"
    assert (out.task, out.original_task, out.project, out.system_tags) == (task.id, task.id, "models", [])


def test_weights_package_lists_a_stored_folders_files(tmp_path):
    task = Task.create(project_name="models", task_name="pkg")
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.bin").write_bytes(b"b")
    out = OutputModel(task=task, name="pkg")
    out.update_weights_package(weights_path=str(folder))
    model = Model(out.id)
    files = model.get_weights_package()
    assert sorted(p.rsplit("/", 1)[-1] for p in files) == ["a.bin", "b.bin"]
    assert model.get_weights_package(return_path=True) == model.get_local_copy() and model.original_task == task.id
