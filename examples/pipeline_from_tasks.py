"""ClearML's "pipeline from tasks" example on labpipe: existing tasks, cloned and overridden as steps.

    python examples/pipeline_from_tasks.py                # steps run on the built-in worker pool
    python examples/pipeline_from_tasks.py --C 0.05 --test-size 0.3

First the template tasks (what a ClearML user would have run once by hand): three Python functions
made into tasks with `Task.create_function_task` (their arguments are `kwargs/` parameters), and one
script made into a task with `Task.create(script=...)` (its arguments are `Args/` parameters, passed
on its command line). Templates are never run themselves.

Then a `PipelineController` clones each template as a step, overrides its parameters, and enqueues
the clone once its parents completed. Overrides may reference, resolved at launch:

    ${pipeline.C}                     a pipeline parameter (`add_parameter`)
    ${prep.artifacts.data.url}        an artifact of an earlier step (the CSV the prep step wrote)
    ${train.id}                       an earlier step's task id
    ${train.parameters.kwargs/C}      an earlier step's parameter

A reference makes the step it names a parent. The data is scikit-learn's bundled breast-cancer set
(offline). The script exits non-zero if the pipeline fails.
"""

import argparse
import os
import sys

from labpipe import PipelineController, Task, TaskTypes

PROJECT = "examples"
TEMPLATES = "examples/templates"
REPORT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "step_scripts", "report_step.py")


def prepare_data(test_size: float = 0.25, seed: int = 0):
    """Split the data and store it as one CSV file artifact ("data"), with a `split` column."""
    import os
    import tempfile

    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from labpipe import Task

    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=frame["target"])
    data = pd.concat([train.assign(split="train"), test.assign(split="test")])
    path = os.path.join(tempfile.mkdtemp(), "breast_cancer.csv")
    data.to_csv(path, index=False)
    task = Task.current_task()
    task.upload_artifact("data", path)  # a file artifact: later steps read it through its url
    task.get_logger().report_scalar("data", "train rows", len(train), 0)
    task.get_logger().report_scalar("data", "test rows", len(test), 0)
    return len(data)


def train_model(data_url: str = "", C: float = 1.0):
    """Fit a scaled logistic regression on the train rows of the CSV at `data_url`; store it ("model")."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from labpipe import StorageManager, Task

    data = pd.read_csv(StorageManager.get_local_copy(data_url))
    train = data[data["split"] == "train"]
    X, y = train.drop(columns=["target", "split"]), train["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X, y)
    task = Task.current_task()
    accuracy = float(model.score(X, y))
    task.get_logger().report_scalar("accuracy", "train", accuracy, 0)
    task.upload_artifact("model", model)
    return accuracy


def evaluate_model(data_url: str = "", train_task_id: str = ""):
    """Score the model of task `train_task_id` on the test rows; store the confusion matrix."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix, roc_auc_score

    from labpipe import StorageManager, Task

    model = Task.get_task(task_id=train_task_id).artifacts["model"].get()
    data = pd.read_csv(StorageManager.get_local_copy(data_url))
    test = data[data["split"] == "test"]
    X, y = test.drop(columns=["target", "split"]), test["target"]
    accuracy = float(model.score(X, y))
    roc_auc = float(roc_auc_score(y, model.predict_proba(X)[:, 1]))
    task = Task.current_task()
    task.get_logger().report_scalar("accuracy", "test", accuracy, 0)
    task.get_logger().report_scalar("roc_auc", "test", roc_auc, 0)
    matrix = pd.DataFrame(confusion_matrix(y, model.predict(X)), index=["true 0", "true 1"], columns=["pred 0", "pred 1"])
    task.upload_artifact("confusion", matrix)
    return {"accuracy": accuracy, "roc_auc": roc_auc}


def make_templates() -> dict[str, Task]:
    """The template tasks the pipeline clones (made afresh each run; the controller never runs them)."""
    return {
        "prep": Task.create_function_task(prepare_data, task_name="prepare data", project_name=TEMPLATES,
                                          task_type=TaskTypes.data_processing, return_values=["rows"]),
        "train": Task.create_function_task(train_model, task_name="train model", project_name=TEMPLATES,
                                           task_type=TaskTypes.training, return_values=["train_accuracy"]),
        "evaluate": Task.create_function_task(evaluate_model, task_name="evaluate model", project_name=TEMPLATES,
                                              task_type=TaskTypes.testing, return_values=["scores"]),
        "report": Task.create(project_name=TEMPLATES, task_name="report", task_type=TaskTypes.qc, script=REPORT_SCRIPT,
                              argparse_args={"evaluate_task_id": "", "C": 1.0, "title": "model report"}),
    }


def build_pipeline(templates: dict[str, Task], C: float, test_size: float) -> PipelineController:
    pipe = PipelineController(name="pipeline from tasks", project=PROJECT, version="1.0", add_pipeline_tags=True)
    pipe.add_parameter("test_size", test_size, description="fraction of the rows held out for testing")
    pipe.add_parameter("C", C, description="inverse regularisation strength of the logistic regression")
    pipe.add_step(
        "prep", base_task_id=templates["prep"].id,
        parameter_override={"kwargs/test_size": "${pipeline.test_size}"},
        monitor_metrics=[("data", "train rows"), ("data", "test rows")],
    )
    pipe.add_step(
        "train", base_task_id=templates["train"].id,
        parameter_override={"kwargs/data_url": "${prep.artifacts.data.url}", "kwargs/C": "${pipeline.C}"},
        monitor_metrics=[("accuracy", "train")],
    )
    pipe.add_step(
        "evaluate", base_task_id=templates["evaluate"].id,
        parameter_override={"kwargs/data_url": "${prep.artifacts.data.url}", "kwargs/train_task_id": "${train.id}"},
        monitor_metrics=[("accuracy", "test"), ("roc_auc", "test")],
        monitor_artifacts=["confusion"],
    )
    pipe.add_step(
        "report", base_task_id=templates["report"].id,
        parameter_override={"Args/evaluate_task_id": "${evaluate.id}", "Args/C": "${train.parameters.kwargs/C}"},
        monitor_artifacts=["report"],
    )
    return pipe


def print_results(pipe: PipelineController) -> None:
    print(f"pipeline {pipe.id}: {pipe.task.get_status()}")
    for name, node in pipe.get_pipeline_dag().items():
        took = f"{node.duration:.2f} s" if node.duration is not None else "-"
        print(f"  {name:<9} {node.status:<10} {took:>8}  task {node.task_id}" + (f"  ({node.error})" if node.error else ""))
    for title, series in pipe.task.get_last_scalar_metrics().items():
        for name, value in series.items():
            print(f"  metric {title}/{name}: {value['last']:.4f}")
    artifacts = pipe.task.artifacts
    if "confusion" in artifacts:
        print(artifacts["confusion"].get())
    if "report" in artifacts:
        print(artifacts["report"].get(), end="")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--test-size", type=float, default=0.25, help="fraction held out for testing")
    args = parser.parse_args()
    pipeline = build_pipeline(make_templates(), C=args.C, test_size=args.test_size)
    ok = pipeline.start_locally(run_pipeline_steps_locally=True)
    print_results(pipeline)
    sys.exit(0 if ok else 1)
