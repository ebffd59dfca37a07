"""The `labpipe` command: listings (text and --json), show, archive, artifact, gc, clone, plot, errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from labpipe import Task
from labpipe.cli import main


def run(*args, ok=True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def done_task():
    t = Task.create(project_name="cli", task_name="prep")
    t.set_parameters({"Args/lr": 0.1, "Args/epochs": 3})
    t.upload_artifact("table", {"a": [1, 2]})
    t.get_logger().report_scalar("loss", "train", 0.25, 1)
    t.mark_completed()
    return t


def test_tasks_lists_aligned_text_and_json(done_task):
    text = run("tasks").output
    assert done_task.id in text and "prep" in text and "completed" in text
    rows = json.loads(run("tasks", "--json", "--project", "cli").output)
    assert rows[0]["id"] == done_task.id and rows[0]["status"] == "completed"
    assert json.loads(run("tasks", "--json", "--status", "failed").output) == []


def test_show_prints_parameters_artifacts_and_scalars(done_task):
    text = run("show", done_task.id).output
    assert "Args/lr = 0.1" in text and "table" in text and "loss/train: 0.25" in text
    payload = json.loads(run("show", done_task.id, "--json").output)
    assert payload["parameters"] == {"Args/epochs": 3, "Args/lr": 0.1}


def test_unknown_task_is_one_clear_line_and_exit_1():
    result = run("show", "deadbeef", ok=False)
    assert result.exit_code == 1 and "no task with id 'deadbeef'" in result.output
    assert "Traceback" not in result.output


def test_archive_hides_the_task_from_listings(done_task):
    run("archive", done_task.id)
    assert done_task.get_archived()
    assert json.loads(run("tasks", "--json").output) == []
    assert len(json.loads(run("tasks", "--json", "--archived").output)) == 1
    run("archive", "--undo", done_task.id)
    assert not done_task.get_archived()


def test_artifact_is_written_out(done_task, tmp_path):
    import pickle

    out = tmp_path / "t.pkl"
    run("artifact", done_task.id, "table", "-o", str(out))
    assert pickle.loads(out.read_bytes()) == {"a": [1, 2]}
    result = run("artifact", done_task.id, "nope", "-o", str(out), ok=False)
    assert result.exit_code == 1 and "has no artifact 'nope'" in result.output


def test_queues_and_gc_report(done_task):
    queues = {q["name"]: q for q in json.loads(run("queues", "--json").output)}
    assert {"default", "services"} <= set(queues)
    report = json.loads(run("gc", "--json", "--grace", "0").output)
    assert report["deleted_files"] == 0 and report["deleted_inline"] == 0  # everything is referenced


def test_clone_sets_typed_parameters_and_enqueues(done_task):
    payload = json.loads(run("clone", done_task.id, "--set", "Args/lr=0.5", "--set", "Args/epochs=7", "--enqueue", "gpu", "--json").output)
    clone = Task.get_task(task_id=payload["id"])
    assert clone.get_parameters() == {"Args/lr": 0.5, "Args/epochs": 7}
    assert clone.get_status() == "queued" and clone.data.queue == "gpu"
    result = run("clone", done_task.id, "--set", "nonsense", ok=False)
    assert result.exit_code == 1 and "SECTION/NAME=VALUE" in result.output


def test_plot_of_a_task_that_is_not_a_pipeline_says_so(done_task, tmp_path):
    result = run("plot", done_task.id, "-o", str(tmp_path / "x.png"), ok=False)
    assert result.exit_code == 1 and "is not a pipeline run" in result.output
