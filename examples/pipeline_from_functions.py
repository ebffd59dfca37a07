"""ClearML's "pipeline from functions" example on labpipe: `PipelineController.add_function_step`.

    python examples/pipeline_from_functions.py            # run it twice: the second run is all cached
    python examples/pipeline_from_functions.py --test-size 0.3

Each step is a plain function run as a standalone task on the built-in worker pool (so it imports
what it uses inside its body). `function_return` names what a step returns; another step receives
it with `function_kwargs={"df": "${load.df}"}`: the object travels by reference, from the store to
the worker, never through the controller. `${pipeline.<name>}` passes a pipeline parameter.

With `cache_executed_step=True`, a step whose code and arguments did not change reuses the task
that ran it before. The data is scikit-learn's bundled wine set (offline). The script exits
non-zero if the pipeline fails.
"""

import argparse
import sys

from labpipe import PipelineController, TaskTypes


def load_wine_frame():
    """The wine data as one DataFrame with a `target` column."""
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def split_frame(df, test_size: float = 0.25, seed: int = 0):
    """Train and test rows, stratified by target."""
    from sklearn.model_selection import train_test_split

    X, y = df.drop(columns=["target"]), df["target"]
    return train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)


def fit_model(X_train, y_train, n_estimators: int = 100):
    """A random forest on the train rows."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, random_state=0, n_jobs=1).fit(X_train, y_train)


def score_model(model, X_test, y_test):
    """Test accuracy, also reported as a scalar on the step's task."""
    from labpipe import Task

    accuracy = float(model.score(X_test, y_test))
    Task.current_task().get_logger().report_scalar("accuracy", "test", accuracy, 0)
    return accuracy


def build_pipeline(test_size: float, n_estimators: int) -> PipelineController:
    pipe = PipelineController(name="pipeline from functions", project="examples", version="1.0")
    pipe.add_parameter("test_size", test_size, description="fraction of the rows held out for testing")
    pipe.add_parameter("n_estimators", n_estimators, description="trees in the forest")
    pipe.add_function_step(
        "load", load_wine_frame, function_return=["df"], cache_executed_step=True, task_type=TaskTypes.data_processing,
    )
    pipe.add_function_step(
        "split", split_frame, function_kwargs={"df": "${load.df}", "test_size": "${pipeline.test_size}"},
        function_return=["X_train", "X_test", "y_train", "y_test"], cache_executed_step=True,
        task_type=TaskTypes.data_processing,
    )
    pipe.add_function_step(
        "train", fit_model,
        function_kwargs={"X_train": "${split.X_train}", "y_train": "${split.y_train}", "n_estimators": "${pipeline.n_estimators}"},
        function_return=["model"], cache_executed_step=True, task_type=TaskTypes.training,
    )
    pipe.add_function_step(
        "score", score_model,
        function_kwargs={"model": "${train.model}", "X_test": "${split.X_test}", "y_test": "${split.y_test}"},
        function_return=["accuracy"], cache_executed_step=True, task_type=TaskTypes.qc,
        monitor_metrics=[("accuracy", "test")],
    )
    return pipe


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--n-estimators", type=int, default=100)
    args = parser.parse_args()
    pipe = build_pipeline(args.test_size, args.n_estimators)
    ok = pipe.start_locally()
    print(f"pipeline {pipe.id}: {pipe.task.get_status()}")
    dag = pipe.get_pipeline_dag()
    for name, node in dag.items():
        print(f"  {name:<6} {node.status:<10} task {node.task_id}" + (f"  ({node.error})" if node.error else ""))
    if ok:
        from labpipe import Task

        accuracy = Task.get_task(task_id=dag["score"].task_id).artifacts["accuracy"].get()
        print(f"test accuracy: {100 * accuracy:.1f}%  ({sum(n.status == 'cached' for n in dag.values())} of {len(dag)} steps cached)")
    sys.exit(0 if ok else 1)
