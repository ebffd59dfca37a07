"""Every script under examples/ runs as a user would run it, and leaves the store holding what it claims.

Each example runs in a subprocess (its own session, with a time limit) on the test's store; the
checks then read that store: pipeline task completed, steps completed (or cached on a re-run),
artifacts and metrics present. After each run no process of that session may be left: the
built-in pool must stop its workers when the script exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from labpipe import Task
from labpipe.store import leases, pipelines
from labpipe.store.db import get_database
from labpipe.waiting import WORKER_MAX_AGE

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TIMEOUT = 45.0


# -- running an example ---------------------------------------------------------------------


def _session_pids(sid: int) -> list[int]:
    """Live processes of session `sid`: anything the example started that is still around (zombies,
    already dead and waiting to be reaped by init, do not count)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def run_example(name: str, store: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run examples/<name> on `store`; fail on a non-zero exit, a timeout, or processes left behind."""
    env = dict(os.environ, LABPIPE_STORE=str(store), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("LABPIPE_TASK_ID", None)
    # Output goes to files, not pipes: a leftover process holding a pipe would hide behind the wait.
    out_path, err_path = cwd / f"{name}.{time.monotonic_ns()}.out", cwd / f"{name}.{time.monotonic_ns()}.err"
    with open(out_path, "w") as out_file, open(err_path, "w") as err_file:
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, text=True,
                                stdout=out_file, stderr=err_file, start_new_session=True)
        try:
            proc.wait(timeout=TIMEOUT)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
    out, err = out_path.read_text(), err_path.read_text()
    if timed_out:
        pytest.fail(f"{name} did not finish within {TIMEOUT} s\n--- stdout\n{out}\n--- stderr\n{err}")
    deadline = time.monotonic() + 3.0
    while (left := _session_pids(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:  # ours: started by the example we ran
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"{name} left processes running after it exited: {left}"
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
    live = leases.live_workers(get_database(store), WORKER_MAX_AGE)
    assert live == [], f"{name} exited but workers are still registered as live: {live}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- reading the store ----------------------------------------------------------------------


def pipeline_runs(name: str) -> list[Task]:
    """Runs of pipeline `name` (decorator or controller), oldest first."""
    runs = [t for t in Task.get_tasks(task_type="controller") if t.data.runtime.get("pipeline_name") == name]
    return sorted(runs, key=lambda t: t.data.created)


def nodes_of(run: Task) -> dict[str, dict]:
    return {n["name"]: n for n in pipelines.load_nodes(get_database(), run.id)}


def step_task_ids() -> set[str]:
    return {t.id for t in Task.get_tasks() if t.task_type not in ("controller", "optimizer")}


def assert_completed_with(nodes: dict[str, dict], expected: dict[str, set[str]], status: str = "completed") -> None:
    """Every expected node has `status`, and its task is completed with (at least) these artifacts."""
    assert set(nodes) == set(expected), f"nodes {sorted(nodes)}, expected {sorted(expected)}"
    for name, artifacts in expected.items():
        node = nodes[name]
        assert node["status"] == status, f"step {name!r} is {node['status']}: {node['error']}"
        task = Task.get_task(task_id=node["task"])
        assert task.get_status() == "completed", f"step {name!r}: task {task.id} is {task.get_status()}"
        missing = artifacts - set(task.artifacts)
        assert not missing, f"step {name!r}: task {task.id} lacks artifacts {sorted(missing)}; has {sorted(task.artifacts)}"


# -- what each example must leave behind ----------------------------------------------------


def check_decorator(store: Path, cwd: Path) -> None:
    first = run_example("pipeline_from_decorator.py", store, cwd)
    assert "pipeline completed" in first.stdout
    [run] = pipeline_runs("pipeline")
    assert run.get_status() == "completed"
    steps = {"step_one": {"data_frame"}, "step_two": {"X_train", "X_test", "y_train", "y_test"},
             "step_three": {"model"}, "step_four": {"accuracy"}}
    assert_completed_with(nodes_of(run), steps)
    accuracy = 100 * Task.get_task(task_id=nodes_of(run)["step_four"]["task"]).artifacts["accuracy"].get()
    assert f"accuracy: {accuracy:.2f}%" in first.stdout and accuracy > 80
    before = step_task_ids()

    second = run_example("pipeline_from_decorator.py", store, cwd)
    assert f"accuracy: {accuracy:.2f}%" in second.stdout
    first_run, again = pipeline_runs("pipeline")
    assert first_run.id == run.id and again.get_status() == "completed"
    assert step_task_ids() == before, "the cached re-run created new step tasks"
    cached = nodes_of(again)
    assert_completed_with(cached, steps, status="cached")
    assert {n: cached[n]["task"] for n in steps} == {n: nodes_of(run)[n]["task"] for n in steps}


def check_from_tasks(store: Path, cwd: Path) -> None:
    out = run_example("pipeline_from_tasks.py", store, cwd, "--C", "0.5").stdout
    [run] = pipeline_runs("pipeline from tasks")
    assert run.get_status() == "completed" and run.get_parameters(cast=True) == {"Args/test_size": 0.25, "Args/C": 0.5}
    nodes = nodes_of(run)
    assert_completed_with(nodes, {"prep": {"data", "rows"}, "train": {"model", "train_accuracy"},
                                  "evaluate": {"confusion", "scores"}, "report": {"report"}})
    assert nodes["evaluate"]["parents"] == ["prep", "train"]  # made parents by the references alone
    prep, train, evaluate, report = (Task.get_task(task_id=nodes[n]["task"]) for n in ("prep", "train", "evaluate", "report"))
    assert train.get_parameters(cast=True)["kwargs/data_url"] == prep.artifacts["data"].url
    assert train.get_parameters(cast=True)["kwargs/C"] == 0.5  # ${pipeline.C}, with its type
    assert evaluate.get_parameters(cast=True)["kwargs/train_task_id"] == train.id  # ${train.id}
    assert report.get_parameters(cast=True)["Args/evaluate_task_id"] == evaluate.id and report.get_parameters(cast=True)["Args/C"] == 0.5
    for step in (prep, train, evaluate, report):
        assert step.parent == run.id and f"pipe: {run.id}" in step.get_tags()
    templates = Task.get_tasks(project_name="examples/templates")
    assert len(templates) == 4 and {t.get_status() for t in templates} == {"created"}  # cloned, never run
    metrics = run.get_last_scalar_metrics()  # monitor_metrics copied onto the pipeline task
    assert metrics["accuracy"]["test"]["last"] > 0.9 and metrics["data"]["train rows"]["last"] == 426
    assert set(run.artifacts) >= {"confusion", "report"}  # monitor_artifacts
    assert "C: 0.5" in run.artifacts["report"].get() and "accuracy/test" in out


def check_from_functions(store: Path, cwd: Path) -> None:
    steps = {"load": {"df"}, "split": {"X_train", "X_test", "y_train", "y_test"}, "train": {"model"}, "score": {"accuracy"}}
    first = run_example("pipeline_from_functions.py", store, cwd).stdout
    [run] = pipeline_runs("pipeline from functions")
    assert run.get_status() == "completed"
    nodes = nodes_of(run)
    assert_completed_with(nodes, steps)
    split = Task.get_task(task_id=nodes["split"]["task"])
    # the DataFrame travelled by reference (store -> worker), not as a copy through the controller
    assert split.get_parameters(cast=True)["kwargs_artifacts/df"] == {"task": nodes["load"]["task"], "artifact": "df"}
    assert split.get_parameters(cast=True)["kwargs/test_size"] == 0.25
    assert run.get_last_scalar_metrics()["accuracy"]["test"]["last"] > 0.8
    assert "(0 of 4 steps cached)" in first
    before = step_task_ids()

    second = run_example("pipeline_from_functions.py", store, cwd).stdout
    assert "(4 of 4 steps cached)" in second
    again = pipeline_runs("pipeline from functions")[-1]
    assert again.get_status() == "completed" and step_task_ids() == before
    assert_completed_with(nodes_of(again), steps, status="cached")


def check_parallel(store: Path, cwd: Path) -> None:
    run_example("parallel_training.py", store, cwd)
    [run] = pipeline_runs("parallel training")
    assert run.get_status() == "completed"
    nodes = nodes_of(run)
    trains = [n for n in nodes if n.startswith("train_")]
    assert len(trains) >= 4
    assert_completed_with(nodes, {"load": {"X_train", "X_val", "y_train", "y_val"}, "pick_best": {"best", "leaderboard"},
                                  **{n: {"model", "accuracy"} for n in trains}})
    assert all(nodes[n]["parents"] == ["load"] for n in trains) and sorted(nodes["pick_best"]["parents"]) == sorted(trains)
    pick = Task.get_task(task_id=nodes["pick_best"]["task"])
    accuracies = {n[len("train_"):]: Task.get_task(task_id=nodes[n]["task"]).artifacts["accuracy"].get() for n in trains}
    assert accuracies[pick.artifacts["best"].get()] == max(accuracies.values())
    if (os.cpu_count() or 1) >= 2:  # one worker per core: with two, training steps overlap
        spans = sorted((nodes[n]["started"], nodes[n]["completed"]) for n in trains)
        assert any(later[0] < earlier[1] for i, earlier in enumerate(spans) for later in spans[i + 1:]), \
            f"no two training steps ran at the same time: {spans}"


def check_random_search(store: Path, cwd: Path) -> None:
    out = run_example("random_search.py", store, cwd).stdout
    [optimizer] = Task.get_tasks(project_name="examples", task_name="random search")
    assert optimizer.task_type == "optimizer" and optimizer.get_status() == "completed"
    trials = Task.get_tasks(task_filter={"parent": optimizer.id})
    assert len(trials) == 10  # two rounds: 6 + 4
    accuracies = {}
    for trial in trials:
        assert trial.get_status() == "completed", f"trial {trial.id}: {trial.get_status_message()}"
        assert {"model", "accuracy"} <= set(trial.artifacts)
        accuracies[trial.id] = trial.get_last_scalar_metrics()["accuracy"]["validation"]["last"]
        assert trial.artifacts["accuracy"].get() == accuracies[trial.id]
    [template] = Task.get_tasks(project_name="examples/templates", task_name="svc template")
    assert template.get_status() == "created"
    assert len({(t.get_parameter("kwargs/C", cast=True), t.get_parameter("kwargs/gamma", cast=True)) for t in trials}) == 10  # each its own
    best = optimizer.artifacts["best"].get()
    top = max(accuracies.values())
    assert best["accuracy"] == top and accuracies[best["task"]] == top  # ties are possible: any top trial
    assert len(optimizer.artifacts["leaderboard"].get()) == 10 and "best: C=" in out


def check_dataset(store: Path, cwd: Path) -> None:
    from labpipe import Dataset, Model

    steps = ["create_dataset", "preprocess", "verify", "train", "train_1", "select_best"]
    first = run_example("dataset_pipeline.py", store, cwd).stdout
    [run] = pipeline_runs("dataset pipeline")
    nodes = nodes_of(run)
    assert run.get_status() == "completed" and sorted(nodes) == sorted(steps)
    raw, named = (Dataset.get(dataset_project="examples/datasets", dataset_name=n) for n in ("census", "census named"))
    assert named.parents == [raw.id] and raw.is_final() and named.is_final()
    assert named.list_added_files() == [] and named.list_modified_files() == ["dataset.csv"]  # only its change
    assert [c["title"] for c in Task.get_task(task_id=nodes["verify"]["task"]).get_logger().get_plots()] == ["age"]
    trained = {m.id: m for m in Model.query_models(project_name="examples") if m.name == "ridge.pkl"}
    assert len(trained) == 2  # joblib.dump in each train step registered its model
    errors = {Task.get_task(task_id=nodes[n]["task"]).get_last_scalar_metrics()["error"]["test"]["last"]: n
              for n in ("train", "train_1")}
    winner = Task.get_task(task_id=nodes[errors[min(errors)]]["task"]).models["output"][-1]
    chooser = Task.get_task(task_id=nodes["select_best"]["task"])
    best = chooser.models["output"]["best"]
    assert best.url == winner.url and f"best model: {best.id}" in first  # the better model's weights
    before = step_task_ids()

    second = run_example("dataset_pipeline.py", store, cwd).stdout
    again = pipeline_runs("dataset pipeline")[-1]
    assert again.get_status() == "completed" and step_task_ids() == before and f"best model: {best.id}" in second
    assert {n["status"] for n in nodes_of(again).values()} == {"cached"}


def check_generic(name: str) -> Callable[[Path, Path], None]:
    """An example without its own checks: it runs, and every pipeline it ran completed."""
    def check(store: Path, cwd: Path) -> None:
        run_example(name, store, cwd)
        runs = Task.get_tasks(task_type="controller")
        assert all(r.get_status() == "completed" for r in runs), [(r.name, r.get_status()) for r in runs]

    return check


CHECKS = {
    "pipeline_from_decorator.py": check_decorator,
    "pipeline_from_tasks.py": check_from_tasks,
    "pipeline_from_functions.py": check_from_functions,
    "parallel_training.py": check_parallel,
    "random_search.py": check_random_search,
    "dataset_pipeline.py": check_dataset,
}


def test_the_examples_named_in_issue_5_exist():
    assert set(CHECKS) <= {p.name for p in EXAMPLES.glob("*.py")}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs_and_leaves_what_it_claims_in_the_store(name, store, tmp_path):
    CHECKS.get(name, check_generic(name))(store, tmp_path)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_help_describes_it_and_runs_nothing(name, store, tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--help"], cwd=tmp_path, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and len(proc.stdout.splitlines()) > 3  # the docstring is shown
    assert not (store / "labpipe.db").exists()  # nothing ran
