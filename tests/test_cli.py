"""The `labpipe` command: listings (text and --json), show, archive, artifact, gc, clone, plot, errors
(bad input is one clear line, never a traceback or a side effect)."""

from __future__ import annotations

import json
import os

import pytest
from cli_runner import run

from labpipe import PipelineDecorator, Task
from labpipe.store import leases, tasks
from labpipe.store.db import get_database

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_STORE = "no labpipe store at"


@pytest.fixture
def done_task():
    t = Task.create(project_name="cli", task_name="prep")
    t.set_parameters({"Args/lr": 0.1, "Args/epochs": 3})
    t.upload_artifact("table", {"a": [1, 2]})
    t.get_logger().report_scalar("loss", "train", 0.25, 1)
    t.mark_completed()
    return t


@pytest.fixture
def pipeline_run():
    """A finished run of a one-step pipeline (debug mode: in this process, no workers)."""
    @PipelineDecorator.component(return_values=["y"])
    def double(x):
        return x * 2

    @PipelineDecorator.pipeline(name="clipipe", project="cli", version="2.1")
    def clipipe(x: int = 3):
        return double(x)

    PipelineDecorator.debug_pipeline()
    try:
        assert clipipe(x=4) == 8
    finally:
        PipelineDecorator._mode = "remote"
    (run_task,) = Task.get_tasks(task_filter={"type": ["controller"]})
    return run_task


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


def test_unknown_task_is_one_clear_line_and_exit_1(done_task):
    result = run("show", "deadbeef", ok=False)
    assert result.exit_code == 1 and "no task with id 'deadbeef'" in result.output
    assert "Traceback" not in result.output


def test_a_unique_id_prefix_works_wherever_an_id_is_taken(done_task):
    prefix = done_task.id[:6]
    assert "Args/lr = 0.1" in run("show", prefix).output
    assert json.loads(run("show", prefix.upper(), "--json").output)["id"] == done_task.id
    run("archive", prefix)
    assert done_task.get_archived()
    assert Task.get_task(task_id=prefix).id == done_task.id


def test_an_ambiguous_prefix_lists_its_candidates_and_a_short_one_says_how_long():
    db = get_database()
    ids = ["abcd" + "0" * 28, "abcd" + "1" * 28, "abce" + "0" * 28]
    for i, tid in enumerate(ids):  # ids chosen to share prefixes (uuid4 ids would almost never)
        row = tasks.create_task(db, name=f"t{i}")
        db.write(lambda c, old=row.id, new=tid: c.execute("UPDATE tasks SET id = ? WHERE id = ?", (new, old)))
    result = run("show", "abcd", ok=False)
    assert result.exit_code == 1 and "ambiguous" in result.output
    assert ids[0] in result.output and ids[1] in result.output and ids[2] not in result.output
    assert Task.get_task(task_id="abce").id == ids[2]
    short = run("show", "abc", ok=False)
    assert "no task with id 'abc' (a prefix needs 4 or more hex characters)" in short.output
    missing = run("show", "ffff", ok=False)
    assert "no task with id 'ffff' in the store" in missing.output and "Traceback" not in missing.output


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
    report = json.loads(run("gc", "--json", "--grace", "60").output)
    assert report["deleted_files"] == 0 and report["deleted_inline"] == 0  # everything is referenced


def test_gc_refuses_a_grace_shorter_than_a_write_can_take(done_task):
    result = run("gc", "--grace", "0", ok=False)
    assert result.exit_code == 2 and "too short" in result.output and "--grace 60" in result.output


def test_fsck_of_a_sound_store_says_ok(done_task):
    done_task.upload_artifact("big", bytes(200_000))
    report = json.loads(run("fsck", "--json").output)
    assert report["ok"] is True and report["remaining"] == 0 and report["problems"] == []
    assert report["file_blobs"] == 1 and report["inline_blobs"] >= 1 and report["rows"] >= 2


def test_fsck_quarantines_corrupt_blobs_and_names_the_rows_that_lost_them(done_task):
    from labpipe.store import blobs

    db = get_database()
    done_task.upload_artifact("big", bytes(200_000))
    path = blobs.blob_path(db, done_task.artifacts["big"].hash)
    path.write_bytes(b"\1" + path.read_bytes()[1:])
    db.execute("UPDATE inline_blobs SET data = ? WHERE hash = ?", (b"garbage", done_task.artifacts["table"].hash))
    stale = db.blobs_dir / ".tmp-1-2"
    stale.write_bytes(b"half")
    os.utime(stale, (1, 1))
    result = run("fsck", "--json", ok=False)
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["corrupt"] == 2 and report["quarantined"] == 2 and report["missing"] == 2
    assert report["temp_files_removed"] == 1 and not stale.exists() and not path.exists()
    lost = {(p["task"], p["name"]) for p in report["problems"] if p["kind"] == "missing_blob"}
    assert lost == {(done_task.id, "big"), (done_task.id, "table")}
    text = run("fsck", ok=False).output  # the rows still name lost bytes: the problem remains
    assert f"artifact 'big' of task {done_task.id}" in text and "2 problems remain" in text


def test_clone_sets_typed_parameters_and_enqueues(done_task):
    payload = json.loads(run("clone", done_task.id, "--set", "Args/lr=0.5", "--set", "Args/epochs=7", "--enqueue", "gpu", "--json").stdout)
    clone = Task.get_task(task_id=payload["id"])
    assert clone.get_parameters(cast=True) == {"Args/lr": 0.5, "Args/epochs": 7}
    assert clone.get_status() == "queued" and clone.data.queue == "gpu"
    result = run("clone", done_task.id, "--set", "nonsense", ok=False)
    assert result.exit_code == 1 and "SECTION/NAME=VALUE" in result.output


def test_plot_of_a_task_that_is_not_a_pipeline_says_so(done_task, tmp_path):
    result = run("plot", done_task.id, "-o", str(tmp_path / "x.png"), ok=False)
    assert result.exit_code == 1 and "is not a pipeline run" in result.output


# -- -o: where outputs go -------------------------------------------------------------------------


def test_plot_into_a_missing_folder_is_one_clear_line(pipeline_run, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "x.png"
    result = run("plot", pipeline_run.id, "-o", str(target), ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot write {target}: no such folder {target.parent}" in result.output
    assert not (tmp_path / "no").exists()  # no folders made up from a mistyped path


def test_plot_into_an_existing_folder_writes_dag_png_there(pipeline_run, tmp_path):
    result = run("plot", pipeline_run.id, "-o", str(tmp_path))
    assert (tmp_path / "dag.png").read_bytes().startswith(PNG_MAGIC)
    assert f"wrote {tmp_path / 'dag.png'}" in result.output


def test_artifact_into_an_existing_folder_uses_its_file_name(done_task, tmp_path):
    import pickle

    result = run("artifact", done_task.id, "table", "-o", str(tmp_path))
    assert pickle.loads((tmp_path / "table.pkl").read_bytes()) == {"a": [1, 2]}
    assert f"wrote {tmp_path / 'table.pkl'}" in result.output
    # a folder artifact, as cp -r: a new path becomes the folder, an existing folder gets it inside
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("a\n1\n")
    done_task.upload_artifact("data", tmp_path / "data")
    run("artifact", done_task.id, "data", "-o", str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "rows.csv").read_text() == "a\n1\n"
    (tmp_path / "into").mkdir()
    run("artifact", done_task.id, "data", "-o", str(tmp_path / "into"))
    assert (tmp_path / "into" / "data" / "rows.csv").read_text() == "a\n1\n"


def test_output_in_a_missing_or_non_folder_is_one_clear_line(done_task, pipeline_run, tmp_path):
    missing = tmp_path / "nope" / "t.pkl"
    result = run("artifact", done_task.id, "table", "-o", str(missing), ok=False)
    assert result.exit_code == 1 and f"cannot write {missing}: no such folder {missing.parent}" in result.output
    assert not missing.parent.exists()
    result = run("artifact", done_task.id, "table", "-o", str(tmp_path / "newdir") + "/", ok=False)
    assert result.exit_code == 1 and "no such folder" in result.output and not (tmp_path / "newdir").exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for args in (("artifact", done_task.id, "table"), ("plot", pipeline_run.id)):
        result = run(*args, "-o", str(a_file / "x"), ok=False)
        assert result.exit_code == 1 and f"{a_file} is not a folder" in result.output
        assert "Traceback" not in result.output


# -- clone ----------------------------------------------------------------------------------------


def test_clone_with_a_bad_set_creates_nothing(done_task):
    for bad in ("Args/=5", "/lr=5"):
        result = run("clone", done_task.id, "--set", "Args/lr=0.5", "--set", bad, "--enqueue", "default", ok=False)
        assert result.exit_code == 1 and f"--set {bad!r}" in result.output and "not valid" in result.output
    assert [t.id for t in Task.get_tasks()] == [done_task.id]  # no draft clone left behind
    assert all(q["queued"] == 0 for q in json.loads(run("queues", "--json").output))


def test_clone_refuses_a_value_that_does_not_fit_the_parameters_type(done_task):
    for bad, why in (("Args/epochs=2.7", "expected int (like 3), got 2.7: it is not a whole number"),
                     ("Args/lr=abc", "expected float (like 0.1), got 'abc'")):
        result = run("clone", done_task.id, "--set", bad, ok=False)
        assert result.exit_code == 1 and why in result.output, result.output
    assert [t.id for t in Task.get_tasks()] == [done_task.id]
    clone_id = json.loads(run("clone", done_task.id, "--set", "Args/epochs=7", "--set", "Args/lr=1", "--json").stdout)["id"]
    assert Task.get_task(task_id=clone_id).get_parameters(cast=True) == {"Args/lr": 1.0, "Args/epochs": 7}


def test_a_cloned_pipeline_run_keeps_what_it_is_not_how_it_ran(pipeline_run):
    db = get_database()
    tasks.update_task(db, pipeline_run.id, runtime={**pipeline_run.data.runtime, "worker": "agent:h:1", "imports": ["numpy"]})
    clone_id = json.loads(run("clone", pipeline_run.id, "--json").stdout)["id"]
    assert Task.get_task(task_id=clone_id).data.runtime == {"pipeline_name": "clipipe", "pipeline_version": "2.1"}
    listed = {r["id"]: r for r in json.loads(run("pipelines", "--json", "--name", "clipipe").output)}
    assert set(listed) == {pipeline_run.id, clone_id} and listed[clone_id]["version"] == "2.1"
    # the clone counts as a run of its pipeline: the next run is #3
    PipelineDecorator.debug_pipeline()
    try:
        @PipelineDecorator.pipeline(name="clipipe", project="cli", version="2.1")
        def clipipe():
            return 1

        clipipe()
    finally:
        PipelineDecorator._mode = "remote"
    assert Task.get_tasks(task_filter={"type": ["controller"]})[0].name == "clipipe #3"


def test_clone_enqueued_where_no_worker_serves_says_how_to_start_one(done_task):
    result = run("clone", done_task.id, "--enqueue", "nosuchq", "--json")
    assert result.exit_code == 0
    assert Task.get_task(task_id=json.loads(result.stdout)["id"]).get_status() == "queued"  # hints go to stderr
    assert "queue 'nosuchq' did not exist; it was created" in result.stderr
    assert "no worker serves queue 'nosuchq' yet: start one with `labpipe agent --queue nosuchq`" in result.stderr
    result = run("clone", done_task.id, "--enqueue", "services")
    assert "no worker serves queue 'services' yet" in result.stderr and "did not exist" not in result.stderr
    leases.register_worker(get_database(), "agent:h:1", kind="agent", queues=["services"], host="h", pid=1)
    result = run("clone", done_task.id, "--enqueue", "services")
    assert result.stderr == "" and "enqueued on 'services'" in result.output


# -- bad options and stores -----------------------------------------------------------------------


def test_tasks_status_must_be_a_known_status(done_task):
    result = run("tasks", "--status", "bogus", ok=False)
    assert result.exit_code == 2 and "'bogus' is not one of" in result.output
    assert "'in_progress'" in result.output and "'published'" in result.output


@pytest.mark.parametrize("args", [
    ["tasks"], ["show", "abc"], ["queues"], ["pipelines"], ["archive", "abc"], ["artifact", "abc", "x", "-o", "out"],
    ["gc"], ["plot", "abc"], ["clone", "abc"], ["workers"], ["stop", "abc"],
])
def test_a_store_that_is_not_there_is_an_error_not_a_new_store(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "typo-store"
    result = run("--store", str(typo), *args, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{NO_STORE} {typo} (LABPIPE_STORE / --store)" in result.output and "`labpipe agent`" in result.output
    assert not typo.exists() and not (tmp_path / "out").exists() and not (tmp_path / "dag.png").exists()


def test_the_store_from_the_environment_must_exist_too(store):
    result = run("tasks", ok=False)
    assert result.exit_code == 1 and f"{NO_STORE} {store}" in result.output and not store.exists()


def test_agent_may_start_a_new_store_and_says_so(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import threading

    new = tmp_path / "new-store"
    proc = subprocess.Popen([sys.executable, "-m", "labpipe.cli", "--store", str(new), "agent", "--queue", "q1", "--workers", "1"],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if " labpipe agent[" in line and "serving" in line:  # the agent's one log line format
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(30), "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
    assert proc.returncode == 0, "".join(lines)
    first = next(line for line in lines if " labpipe agent[" in line and "serving" in line)
    assert f"on a new store at {new}" in first and "serving q1" in first
    assert json.loads(run("--store", str(new), "queues", "--json").output)  # now it is a store the others open


def test_artifact_to_stdout_and_plot_refuses_an_unknown_format(done_task, pipeline_run, tmp_path):
    import pickle

    result = run("artifact", done_task.id, "table", "-o", "-")
    assert pickle.loads(result.stdout_bytes) == {"a": [1, 2]} and "to stdout" in result.stderr
    txt = tmp_path / "dag.txt"
    result = run("plot", pipeline_run.id, "-o", str(txt), ok=False)
    assert result.exit_code == 1 and "known suffixes are .png, .svg" in result.output and not txt.exists()


def test_fsck_names_a_dataset_file_whose_blob_is_gone(tmp_path):
    from labpipe.dataset import Dataset
    from labpipe.store import blobs

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(bytes(200_000))
    ds = Dataset.create(dataset_name="raw", dataset_project="data")
    ds.add_files(tmp_path / "data")
    ds.finalize()
    db = get_database()
    digest = db.query_one("SELECT hash FROM dataset_files")[0]
    blobs.blob_path(db, digest).unlink()
    result = run("fsck", ok=False)
    assert result.exit_code == 1 and "file 'big.bin' of dataset" in result.output


# -- listings of pipeline runs and their steps, clone --set, enqueue (issue 11) -------------------------


@pytest.fixture
def repeated_run(local_mode):
    """A finished local run that calls one component twice."""
    from pipeline_components import square

    @PipelineDecorator.pipeline(name="repeats", project="cli", version="1.0")
    def repeats():
        return square(square(3))

    assert repeats() == 81
    (run_task,) = [t for t in Task.get_tasks(project_name="cli") if t.task_type == "controller"]
    return run_task


def test_show_of_a_pipeline_run_lists_its_steps(repeated_run):
    text = run("show", repeated_run.id[:8]).output
    assert "steps (2: 2 completed):" in text
    step_lines = [line.split() for line in text.splitlines() if line.strip().startswith("square")]
    assert [line[:3] for line in step_lines] == [["square", "completed", "no"], ["square_1", "completed", "no"]]
    data = json.loads(run("show", repeated_run.id, "--json").output)
    names = [s["name"] for s in data["steps"]]
    assert names == ["square", "square_1"]
    step = data["steps"][0]
    assert isinstance(step["duration"], float) and step["cached"] is False and len(step["task"]) == 32
    assert isinstance(data["created"], float) and isinstance(data["elapsed"], float)  # numbers, seconds


def test_tasks_names_repeated_steps_as_the_dag_does_and_json_has_parent(repeated_run):
    rows = json.loads(run("tasks", "--project", "cli", "--json").output)
    steps = {r["name"]: r for r in rows if r["type"] != "controller"}
    assert set(steps) == {"square", "square_1"}
    assert {r["parent"] for r in steps.values()} == {repeated_run.id}
    assert all(isinstance(r["elapsed"], float) for r in steps.values())
    assert "square_1" in run("tasks", "--project", "cli").output


def test_clone_set_of_a_parameter_the_task_lacks_is_refused_listing_those_it_has(done_task):
    before = len(Task.get_tasks())
    result = run("clone", done_task.id, "--set", "Args/lrr=0.5", ok=False)
    assert result.exit_code == 1
    assert "no parameter 'Args/lrr'" in result.output and "Args/epochs, Args/lr" in result.output
    assert len(Task.get_tasks()) == before  # nothing half-made


def test_enqueue_puts_a_clone_made_without_enqueue_on_a_queue(done_task):
    clone_id = json.loads(run("clone", done_task.id, "--json").stdout)["id"]
    result = run("enqueue", clone_id[:8], "--queue", "later")
    assert "enqueued" in result.output
    clone = Task.get_task(task_id=clone_id)
    assert clone.get_status() == "queued" and clone.data.queue == "later"
    again = run("enqueue", clone_id, "--queue", "later", ok=False)
    assert again.exit_code == 1 and "already queued" in again.output


def test_show_log_of_a_silent_step_says_no_output(done_task):
    result = run("show", done_task.id, "--log")
    assert "(no output" in result.output


def test_a_clone_of_a_pipeline_run_gets_the_next_run_number(pipeline_run):
    clone_id = json.loads(run("clone", pipeline_run.id, "--json").stdout)["id"]
    assert Task.get_task(task_id=clone_id).name == "clipipe #2"
