"""Data passed as datasets, models chosen by score: the shape of ClearML's tabular pipeline example, on labpipe.

    python examples/dataset_pipeline.py            # local mode: controller here, steps on the pool
    python examples/dataset_pipeline.py --debug    # plain function calls

A census-like CSV is made offline (no download). `create_dataset` stores it as a dataset; `preprocess`
names its columns in a child dataset (which holds only what changed); `verify` checks the columns and
reports a histogram; two `train` steps fit ridge regressions of age, saved with joblib (which registers them
as output models, as in ClearML); `select_best` connects the better one to its task as the model "best". Datasets and models are
tasks and files of the store: `labpipe datasets` lists them. Run it twice: the second run is served from
the cache.
"""

import argparse
import os
import random
import tempfile

from labpipe import PipelineDecorator, TaskTypes

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-yrs", "hours-per-week", "capital-gain", "income"]


@PipelineDecorator.component(cache=True, task_type=TaskTypes.data_processing)
def create_dataset(source_url: str, project: str, dataset_name: str) -> str:
    import os
    import tempfile

    import pandas as pd

    from labpipe import Dataset, StorageManager

    local_file = StorageManager.get_local_copy(source_url)
    df = pd.read_csv(local_file, header=None)
    csv = os.path.join(tempfile.mkdtemp(), "dataset.csv")  # not beside the step's source
    df.to_csv(csv, index=False, header=False)
    dataset = Dataset.create(dataset_project=project, dataset_name=dataset_name)
    dataset.add_files(csv)
    dataset.get_logger().report_table(title="sample", series="head", table_plot=df.head())
    dataset.finalize(auto_upload=True)
    return dataset.id


@PipelineDecorator.component(cache=True, task_type=TaskTypes.data_processing)
def preprocess(dataset_id: str, columns: list) -> str:
    from pathlib import Path

    import pandas as pd

    from labpipe import Dataset

    dataset = Dataset.get(dataset_id=dataset_id)
    df = pd.read_csv(Path(dataset.get_local_copy()) / "dataset.csv", header=None)
    import os
    import tempfile

    df.columns = columns
    csv = os.path.join(tempfile.mkdtemp(), "dataset.csv")
    df.to_csv(csv, index=False)
    child = Dataset.create(dataset_project=dataset.project, dataset_name=f"{dataset.name} named",
                           parent_datasets=[dataset])
    child.add_files(csv)  # replaces the parent's file: the child holds only this change
    child.finalize(auto_upload=True)
    return child.id


@PipelineDecorator.component(cache=True, task_type=TaskTypes.qc)
def verify(dataset_id: str, expected_columns: int) -> bool:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from labpipe import Dataset, Logger

    df = pd.read_csv(Path(Dataset.get(dataset_id=dataset_id).get_local_copy()) / "dataset.csv")
    counts, edges = np.histogram(df["age"], bins=8)
    Logger.current_logger().report_histogram(
        title="age", series="rows", values=counts, xlabels=[f"{a:.0f}-{b:.0f}" for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return len(df.columns) == expected_columns


@PipelineDecorator.component(cache=True, task_type=TaskTypes.training)
def train(dataset_id: str, alpha: float) -> dict:
    from pathlib import Path

    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split

    from labpipe import Dataset, Task

    df = pd.read_csv(Path(Dataset.get(dataset_id=dataset_id).get_local_copy()) / "dataset.csv")
    X = df[["fnlwgt", "education-yrs", "hours-per-week", "capital-gain"]]
    X_train, X_test, y_train, y_test = train_test_split(X, df["age"], test_size=0.2, random_state=42)
    model = Ridge(alpha=alpha).fit(X_train, y_train)
    error = float(np.linalg.norm(y_test - model.predict(X_test)))
    import os
    import tempfile

    joblib.dump(model, os.path.join(tempfile.mkdtemp(), "ridge.pkl"))  # becomes this step's output model
    task = Task.current_task()
    task.get_logger().report_scalar("error", "test", value=error, iteration=0)
    return {"error": error, "model_id": task.models["output"][-1].id}


@PipelineDecorator.component(cache=True, task_type=TaskTypes.qc)
def select_best(scores: list) -> str:
    from labpipe import OutputModel, Task

    best = min(scores, key=lambda s: s["error"])
    chosen = OutputModel(base_model_id=best["model_id"])  # starts from the trained model's weights
    chosen.connect(task=Task.current_task(), name="best")
    return chosen.id


@PipelineDecorator.pipeline(name="dataset pipeline", project="examples", version="0.1")
def pipeline(data_url: str, project: str = "examples/datasets"):
    raw = create_dataset(source_url=data_url, project=project, dataset_name="census")
    named = preprocess(dataset_id=raw, columns=COLUMNS)
    if not verify(dataset_id=named, expected_columns=len(COLUMNS)):
        print("verification failed: not training")
        return None
    scores = [train(dataset_id=named, alpha=alpha) for alpha in (0.1, 100.0)]
    best = select_best(scores=scores)
    print(f"best model: {best}")
    return best


def make_census_csv() -> str:
    """Write a census-like CSV without a header (2,000 rows, fixed seed) at a stable path."""
    path = os.path.join(tempfile.gettempdir(), "labpipe-example-census.csv")
    if not os.path.exists(path):
        rng = random.Random(7)
        lines = []
        for _ in range(2000):
            years = rng.randint(1, 16)
            age = rng.randint(17, 80)
            row = [age, rng.choice(["private", "self-employed", "government"]), rng.randint(10_000, 500_000),
                   rng.choice(["bachelors", "high school", "masters"]), years, 20 + (age % 40),
                   rng.choice([0, 0, 0, 5000]), rng.choice(["<=50K", ">50K"])]
            lines.append(",".join(map(str, row)))
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="plain function calls in this process")
    args = parser.parse_args()
    if args.debug:
        PipelineDecorator.debug_pipeline()
    else:
        PipelineDecorator.run_locally()
    pipeline(make_census_csv())
    print("pipeline completed")
