"""ClearML's "manual random parameter search" on labpipe: a custom pipeline made of the task API alone.

    python examples/random_search.py

No controller class: this script is the optimizer. It makes a template task (an SVM trained on
scikit-learn's bundled digits, offline), then, as ClearML's example does with an agent, for each
trial: `Task.clone` the template, `get_parameters()` / change some / `set_parameters()`, and
`Task.enqueue` it. The trials of a round run at once on a built-in `Pool` of two workers; the script
waits for all of them (`wait_for_tasks`), reads each trial's scalars and artifacts, keeps the best
two, and launches a second round of trials sampled around them. It reports the winner on its own
task (`Task.init`, type optimizer). Any failed trial makes the script exit non-zero.
"""

import math
import random

from labpipe import StepFailed, Task, TaskTypes
from labpipe.agent import Pool
from labpipe.waiting import wait_for_tasks


def train_svc(C: float = 1.0, gamma: float = 0.001, val_size: float = 0.3, seed: int = 0):
    """The template: fit an RBF SVM on the digits, report its validation accuracy, store the model."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    from labpipe import Task

    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=val_size, random_state=seed, stratify=y)
    model = SVC(C=C, gamma=gamma).fit(X_train, y_train)
    accuracy = float(model.score(X_val, y_val))
    logger = Task.current_task().get_logger()
    logger.report_scalar("accuracy", "validation", accuracy, 0)
    logger.report_scalar("support vectors", "count", int(model.n_support_.sum()), 0)
    return model, accuracy


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return 10 ** rng.uniform(math.log10(low), math.log10(high))


def launch(template: Task, optimizer: Task, values: dict, number: int) -> Task:
    """Clone the template, override its parameters, enqueue the clone (ClearML's recipe, step by step)."""
    trial = Task.clone(source_task=template, name=f"svc trial {number}", parent=optimizer.id, project="examples")
    parameters = trial.get_parameters()  # text, as in ClearML: set_parameters keeps each type
    parameters.update({f"kwargs/{name}": value for name, value in values.items()})
    trial.set_parameters(parameters)
    return Task.enqueue(trial, queue_name="default")


def collect(trials: list[Task]) -> list[dict]:
    """Wait for every trial, then read what each one reported (scalars) and returned (artifacts)."""
    try:
        wait_for_tasks(trials, timeout=120)  # raises StepFailed naming a trial that failed
    except (StepFailed, TimeoutError):
        # Give up on this search, and say so on the trials still waiting or running, so that none
        # is left queued with nobody to run it once the pool stops.
        for trial in trials:
            if trial.get_status() in ("created", "queued", "in_progress"):
                trial.mark_stopped(force=True, status_message="random search gave up: another trial failed")
        raise
    results = []
    for trial in trials:
        scalars = trial.get_last_scalar_metrics()
        results.append({
            "task": trial.id,
            "name": trial.name,
            "C": trial.get_parameter("kwargs/C", cast=True),
            "gamma": trial.get_parameter("kwargs/gamma", cast=True),
            "accuracy": scalars["accuracy"]["validation"]["last"],
            "returned": trial.artifacts["accuracy"].get(),
            "support_vectors": int(scalars["support vectors"]["count"]["last"]),
        })
    return results


def main() -> None:
    optimizer = Task.init(project_name="examples", task_name="random search", task_type=TaskTypes.optimizer)
    config = optimizer.connect({"seed": 7, "first_round": 6, "second_round": 4}, name="General")
    rng = random.Random(config["seed"])
    template = Task.create_function_task(
        train_svc, task_name="svc template", project_name="examples/templates", task_type=TaskTypes.training,
        return_values=["model", "accuracy"],
    )
    logger = optimizer.get_logger()
    with Pool(queues={"default": 2}):  # two workers, stopped when the block ends
        first = [launch(template, optimizer, {"C": log_uniform(rng, 0.1, 100), "gamma": log_uniform(rng, 1e-4, 1e-1)}, i)
                 for i in range(config["first_round"])]
        print(f"round 1: {len(first)} trials enqueued")
        results = collect(first)
        top = sorted(results, key=lambda r: r["accuracy"], reverse=True)[:2]
        print("round 1 best: " + ", ".join(f"C={r['C']:.3g} gamma={r['gamma']:.3g} ({100 * r['accuracy']:.1f}%)" for r in top))

        # Second round: sample around the two best (a factor of up to ~3 either way).
        second = []
        for i in range(config["second_round"]):
            around = top[i % len(top)]
            values = {"C": around["C"] * 10 ** rng.uniform(-0.5, 0.5), "gamma": around["gamma"] * 10 ** rng.uniform(-0.5, 0.5)}
            second.append(launch(template, optimizer, values, len(first) + i))
        print(f"round 2: {len(second)} trials enqueued")
        results += collect(second)

    leaderboard = sorted(results, key=lambda r: r["accuracy"], reverse=True)
    for i, r in enumerate(results):
        logger.report_scalar("trials", "validation accuracy", r["accuracy"], i)
    best = leaderboard[0]
    optimizer.upload_artifact("leaderboard", leaderboard)
    optimizer.upload_artifact("best", {"C": best["C"], "gamma": best["gamma"], "accuracy": best["accuracy"], "task": best["task"]})
    for rank, r in enumerate(leaderboard, 1):
        print(f"  {rank:>2}. {r['name']:<14} C={r['C']:<9.3g} gamma={r['gamma']:<9.3g} "
              f"accuracy={100 * r['accuracy']:.1f}%  support vectors={r['support_vectors']}")
    print(f"best: C={best['C']:.3g} gamma={best['gamma']:.3g} -> {100 * best['accuracy']:.1f}% (task {best['task']}, "
          f"its model is the artifact 'model')")
    optimizer.close()


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
