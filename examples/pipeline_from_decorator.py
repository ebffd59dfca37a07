"""The ClearML pipelines documentation's decorator example, on labpipe: load iris, split, train, score.

    python examples/pipeline_from_decorator.py            # local mode: controller here, steps on the pool
    python examples/pipeline_from_decorator.py --debug    # plain function calls
    python examples/pipeline_from_decorator.py --remote   # controller on the services queue

The data is made offline from scikit-learn's bundled iris (no download). Run it twice: the second
run is served entirely from the cache.
"""

import argparse
import os
import pickle
import tempfile

from labpipe import PipelineDecorator, TaskTypes


@PipelineDecorator.component(return_values=["data_frame"], cache=True, task_type=TaskTypes.data_processing)
def step_one(pickle_data_url: str, extra: int = 43):
    import pickle

    import pandas as pd
    import sklearn  # noqa: F401

    from labpipe import StorageManager

    local_iris_pkl = StorageManager.get_local_copy(remote_url=pickle_data_url)
    with open(local_iris_pkl, "rb") as f:
        iris = pickle.load(f)
    data_frame = pd.DataFrame(iris["data"], columns=iris["feature_names"])
    data_frame["target"] = iris["target"]
    return data_frame


@PipelineDecorator.component(
    return_values=["X_train", "X_test", "y_train", "y_test"], cache=True, task_type=TaskTypes.data_processing
)
def step_two(data_frame, test_size=0.21, random_state=421):
    import pandas as pd  # noqa: F401
    from sklearn.model_selection import train_test_split

    y = data_frame["target"]
    X = data_frame[[c for c in data_frame.columns if c != "target"]]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=random_state)
    return X_train, X_test, y_train, y_test


@PipelineDecorator.component(return_values=["model"], cache=True, task_type=TaskTypes.training)
def step_three(X_train, y_train):
    import pandas as pd  # noqa: F401
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500)
    model.fit(X_train, y_train)
    return model


@PipelineDecorator.component(return_values=["accuracy"], cache=True, task_type=TaskTypes.qc)
def step_four(model, X_data, Y_data):
    from sklearn.linear_model import LogisticRegression  # noqa: F401
    from sklearn.metrics import accuracy_score

    Y_pred = model.predict(X_data)
    return accuracy_score(Y_data, Y_pred, normalize=True)


@PipelineDecorator.pipeline(name="pipeline", project="examples", version="0.1", return_value="accuracy")
def main(pickle_url, mock_parameter="mock"):
    data_frame = step_one(pickle_url)
    X_train, X_test, y_train, y_test = step_two(data_frame)
    model = step_three(X_train, y_train)
    accuracy = 100 * step_four(model, X_data=X_test, Y_data=y_test)
    print(f"accuracy: {accuracy:.2f}%")
    return accuracy


def make_iris_pickle() -> str:
    """Write scikit-learn's bundled iris as the pickle the example loads (offline, stable path)."""
    path = os.path.join(tempfile.gettempdir(), "labpipe-example-iris.pkl")
    if not os.path.exists(path):
        from sklearn.datasets import load_iris

        iris = load_iris()
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            pickle.dump({"data": iris["data"], "target": iris["target"], "feature_names": list(iris["feature_names"])}, f)
        os.replace(tmp, path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--debug", action="store_true", help="plain function calls in this process")
    mode.add_argument("--remote", action="store_true", help="controller on the services queue (the default ClearML mode)")
    args = parser.parse_args()
    if args.debug:
        PipelineDecorator.debug_pipeline()
    elif not args.remote:
        PipelineDecorator.run_locally()
    main(make_iris_pickle())
    print("pipeline completed")
