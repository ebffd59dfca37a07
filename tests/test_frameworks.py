"""What joblib and xgboost save becomes the task's output model (ClearML's auto_connect_frameworks)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from labpipe import PipelineDecorator, Task


@pytest.fixture
def script_task():
    tasks = []

    def start(**kwargs):
        task = Task.init(project_name="fw", task_name="saver", capture_output=False, **kwargs)
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.close()
    from labpipe import frameworks

    frameworks.configure(True)


def test_joblib_dump_registers_an_output_model_holding_the_file(script_task, tmp_path):
    import joblib

    task = script_task()
    path = tmp_path / "model.pkl"
    joblib.dump({"weights": [1, 2, 3]}, path)
    [model] = task.models["output"]
    assert model.name == "model.pkl" and model.framework == "scikit-learn"
    assert joblib.load(model.get_local_copy()) == {"weights": [1, 2, 3]}


def test_saving_the_same_file_again_updates_its_model(script_task, tmp_path):
    import joblib

    task = script_task()
    path = tmp_path / "model.pkl"
    joblib.dump("first", path)
    joblib.dump("second", path)
    [model] = task.models["output"]
    assert joblib.load(model.get_local_copy()) == "second"


@pytest.mark.parametrize("setting", [False, {"joblib": False}])
def test_binding_turned_off_registers_nothing(script_task, tmp_path, setting):
    import joblib

    task = script_task(auto_connect_frameworks=setting)
    joblib.dump("x", tmp_path / "model.pkl")
    assert list(task.models["output"]) == []
    assert (tmp_path / "model.pkl").exists()  # the save itself happened


def test_an_unknown_framework_name_is_refused_naming_it():
    with pytest.raises(ValueError, match="unknown framework.*'jax'"):
        Task.init(task_name="bad", auto_connect_frameworks={"jax": True})


def test_without_a_current_task_a_save_only_saves(tmp_path):
    import joblib

    from labpipe import frameworks

    frameworks.install()
    joblib.dump("x", tmp_path / "m.pkl")
    assert joblib.load(tmp_path / "m.pkl") == "x"


@PipelineDecorator.component(return_values=["model_id"])
def fit_and_save():
    import joblib
    from sklearn.linear_model import LinearRegression

    from labpipe import Task

    joblib.dump(LinearRegression().fit([[0], [1]], [0, 1]), "regression.pkl")
    task = Task.current_task()
    return task.models["output"][-1].id


@PipelineDecorator.pipeline(name="bound", project="fw", version="1.0.0")
def saving_pipeline():
    return fit_and_save()


def test_a_step_run_by_the_pool_registers_what_joblib_saves(local_mode):
    model_id = saving_pipeline()
    from labpipe import Model

    model = Model(model_id=str(model_id))
    assert model.name == "regression.pkl" and model.framework == "scikit-learn"
    import joblib

    assert joblib.load(model.get_local_copy()).coef_.round(3).tolist() == [1.0]


FAKE_XGBOOST = """
class Booster:
    def save_model(self, fname):
        with open(fname, "w") as f:
            f.write("booster")
"""

BROKEN_XGBOOST = "VERSION = 'no Booster here'\n"


def _run_with_fake_xgboost(tmp_path, module_text: str) -> subprocess.CompletedProcess:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "xgboost.py").write_text(module_text)
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        from labpipe import Task
        task = Task.init(project_name="fw", task_name="xgb")
        import xgboost  # imported after Task.init, as scripts do: bound on import
        if hasattr(xgboost, "Booster"):
            xgboost.Booster().save_model("a_model.xgb")
            task.reload()
            print("MODEL", task.models["output"][-1].name, task.models["output"][-1].framework)
        print("DONE")
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "lib"), os.environ.get("PYTHONPATH", "")]),
           "LABPIPE_STORE": str(tmp_path / "store")}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_xgboost_save_model_registers_an_output_model_when_imported_after_task_init(tmp_path):
    done = _run_with_fake_xgboost(tmp_path, FAKE_XGBOOST)
    assert done.returncode == 0, done.stderr
    assert "MODEL a_model.xgb XGBoost" in done.stdout


def test_a_framework_whose_api_changed_is_skipped_with_a_warning_and_the_script_goes_on(tmp_path):
    done = _run_with_fake_xgboost(tmp_path, BROKEN_XGBOOST)
    assert done.returncode == 0, done.stderr
    assert "DONE" in done.stdout and "cannot bind xgboost" in done.stderr


def test_real_xgboost_if_installed(script_task, tmp_path):
    xgb = pytest.importorskip("xgboost")
    import numpy as np

    task = script_task()
    booster = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(np.arange(20.0).reshape(10, 2), label=np.arange(10.0)),
                        num_boost_round=2)
    booster.save_model(str(tmp_path / "a_model.json"))
    assert task.models["output"][-1].framework == "XGBoost"
