"""Several models trained concurrently as pipeline steps, then a step picks the best.

    python examples/parallel_training.py

One `load` step splits scikit-learn's bundled digits (offline). Each candidate model is its own
function step; they all depend on `load` only, so the controller enqueues them together and the
built-in pool (one worker per core) trains them side by side. A last step receives every
candidate's validation accuracy by reference and picks the winner. At the end the script prints
when each step ran, and how many ran at the same time. It exits non-zero if the pipeline fails.
"""

import sys

from labpipe import PipelineController, Task, TaskTypes

# name: (model kind, its settings); names become step names and keyword arguments, so no dots.
CANDIDATES = {
    "logreg_c0_01": ("logreg", {"C": 0.01}),
    "logreg_c1": ("logreg", {"C": 1.0}),
    "random_forest": ("forest", {"n_estimators": 150}),
    "svc_rbf": ("svc", {"C": 10.0}),
    "knn": ("knn", {"n_neighbors": 5}),
}


def load_digits_split(val_size: float = 0.3, seed: int = 0):
    """Train and validation rows of the digits data."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=val_size, random_state=seed, stratify=y)


def train_candidate(kind: str, settings: dict, X_train, y_train, X_val, y_val):
    """Fit one candidate; returns the model and its validation accuracy (also reported as a scalar)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from labpipe import Task

    makers = {
        "logreg": lambda s: make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, **s)),
        "forest": lambda s: RandomForestClassifier(random_state=0, n_jobs=1, **s),
        "svc": lambda s: make_pipeline(StandardScaler(), SVC(**s)),
        "knn": lambda s: KNeighborsClassifier(**s),
    }
    model = makers[kind](settings).fit(X_train, y_train)
    accuracy = float(model.score(X_val, y_val))
    Task.current_task().get_logger().report_scalar("accuracy", "validation", accuracy, 0)
    return model, accuracy


def pick_best(**accuracies):
    """The candidate with the highest validation accuracy, and the whole leaderboard."""
    leaderboard = sorted(accuracies.items(), key=lambda kv: kv[1], reverse=True)
    return leaderboard[0][0], leaderboard


def build_pipeline() -> PipelineController:
    pipe = PipelineController(name="parallel training", project="examples", version="1.0")
    pipe.add_parameter("val_size", 0.3, description="fraction of the rows used for validation")
    pipe.add_function_step(
        "load", load_digits_split, function_kwargs={"val_size": "${pipeline.val_size}"},
        function_return=["X_train", "X_val", "y_train", "y_val"], task_type=TaskTypes.data_processing,
    )
    for name, (kind, settings) in CANDIDATES.items():
        pipe.add_function_step(
            f"train_{name}", train_candidate,
            function_kwargs={"kind": kind, "settings": settings, "X_train": "${load.X_train}", "y_train": "${load.y_train}",
                             "X_val": "${load.X_val}", "y_val": "${load.y_val}"},
            function_return=["model", "accuracy"], task_type=TaskTypes.training,
        )
    pipe.add_function_step(
        "pick_best", pick_best, function_kwargs={name: f"${{train_{name}.accuracy}}" for name in CANDIDATES},
        function_return=["best", "leaderboard"], task_type=TaskTypes.qc,
    )
    return pipe


def peak_concurrency(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals open at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = open_now = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    pipe = build_pipeline()
    ok = pipe.start_locally()
    dag = pipe.get_pipeline_dag()
    print(f"pipeline {pipe.id}: {pipe.task.get_status()}")
    origin = min(n.started for n in dag.values() if n.started)
    for name, node in dag.items():
        if node.started and node.completed:
            print(f"  {name:<20} {node.status:<10} ran {node.started - origin:5.2f} s -> {node.completed - origin:5.2f} s")
        else:
            print(f"  {name:<20} {node.status}" + (f"  ({node.error})" if node.error else ""))
    if not ok:
        sys.exit(1)
    spans = [(n.started, n.completed) for name, n in dag.items() if name.startswith("train_")]
    busy = sum(end - start for start, end in spans)
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    print(f"training: {len(spans)} steps, up to {peak_concurrency(spans)} at once; "
          f"{busy:.2f} s of step time in {wall:.2f} s of wall time")
    best_step = Task.get_task(task_id=dag["pick_best"].task_id)
    best, leaderboard = best_step.artifacts["best"].get(), best_step.artifacts["leaderboard"].get()
    for rank, (name, accuracy) in enumerate(leaderboard, 1):
        print(f"  {rank}. {name:<15} {100 * accuracy:.1f}%")
    model = Task.get_task(task_id=dag[f"train_{best}"].task_id).artifacts["model"].get()
    print(f"best: {best} ({type(model).__name__}), model stored on task {dag[f'train_{best}'].task_id}")
