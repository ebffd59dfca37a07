"""PipelineController: validation before running, task steps with references, function steps, policies."""

from __future__ import annotations

import pipeline_components as pc
import pytest

from labpipe import PipelineController, PipelineError, StepFailed, Task, TaskNotFound
from labpipe.store import pipelines
from labpipe.store.db import get_database

pytestmark = pytest.mark.usefixtures("stop_shared_pool")


def _templates():
    return (Task.create_function_task(pc.produce, task_name="produce-template", project_name="t"),
            Task.create_function_task(pc.consume, task_name="consume-template", project_name="t"))


def _pipe(**kw):
    return PipelineController(name="ctl", project="t", version="1.0", **kw)


def test_duplicate_step_name_is_rejected_at_add_step():
    prod, _ = _templates()
    pipe = _pipe()
    pipe.add_step("a", base_task_id=prod.id)
    with pytest.raises(PipelineError, match="step 'a' is defined twice"):
        pipe.add_step("a", base_task_id=prod.id)


def test_missing_base_task_raises_task_not_found_naming_it():
    with pytest.raises(TaskNotFound, match="step 'a'.*nope"):
        _pipe().add_step("a", base_task_id="nope")
    with pytest.raises(TaskNotFound, match="'ghost'"):
        _pipe().add_step("a", base_task_project="t", base_task_name="ghost")


def test_unknown_parent_cycle_and_bad_reference_fail_before_anything_runs():
    prod, _ = _templates()
    pipe = _pipe()
    pipe.add_step("a", base_task_id=prod.id, parents=["zzz"])
    with pytest.raises(PipelineError, match="'zzz'"):
        pipe.start_locally()
    pipe = _pipe()
    pipe.add_step("a", base_task_id=prod.id, parents=["b"])
    pipe.add_step("b", base_task_id=prod.id, parents=["a"])
    with pytest.raises(PipelineError, match="cycle"):
        pipe.start_locally()
    pipe = _pipe()
    pipe.add_step("a", base_task_id=prod.id, parameter_override={"kwargs/rows": "${nostep.id}"})
    with pytest.raises(PipelineError, match=r"step 'a'.*\$\{nostep\.id\}"):
        pipe.start_locally()
    assert Task.get_tasks(task_filter={"type": ["controller"]}) == []
    assert len(Task.get_tasks()) == 2  # only the templates: nothing was launched


def test_task_steps_resolve_references_and_monitor_onto_the_pipeline():
    prod, cons = _templates()
    pipe = _pipe()
    pipe.add_parameter("rows", 4, description="how many")
    pipe.add_step("prep", base_task_id=prod.id, parameter_override={"kwargs/rows": "${pipeline.rows}"},
                  monitor_metrics=[("prep", "rows")])
    pipe.add_step("train", base_task_id=cons.id, monitor_artifacts=[("return_object", "score")],
                  parameter_override={"kwargs/data_url": "${prep.artifacts.data.url}", "kwargs/lr": 0.5})
    assert pipe.start_locally(run_pipeline_steps_locally=True) is True
    dag = pipe.get_pipeline_dag()
    assert dag["train"].parents == ["prep"]  # the reference made prep a parent
    train = Task.get_task(task_id=dag["train"].task_id)
    assert train.parent == pipe.id and train.get_parameters(cast=True)["kwargs/lr"] == 0.5
    assert train.get_parameters(cast=True)["kwargs/data_url"].startswith("labpipe://")
    assert pipe.task.artifacts["score"].get() == 3.0
    assert pipe.task.get_last_scalar_metrics()["prep"]["rows"]["last"] == 4
    assert pipe.task.get_parameters(cast=True) == {"Args/rows": 4}
    assert prod.get_status() == "created"  # templates are cloned, never run


def test_a_function_step_takes_a_task_steps_artifact_by_name_as_clearml_does():
    prod, _ = _templates()
    pipe = _pipe()
    pipe.add_step("prep", base_task_id=prod.id, parameter_override={"kwargs/rows": 4})
    # `data` is an artifact the task uploads, `return_object` what its function returned
    pipe.add_function_step("sum", pc.total, function_kwargs={"xs": "${prep.data}", "bonus": "${prep.return_object}"},
                           function_return=["s"])
    assert pipe.start_locally(run_pipeline_steps_locally=True) is True
    dag = pipe.get_pipeline_dag()
    assert dag["sum"].parents == ["prep"]
    assert Task.get_task(task_id=dag["sum"].task_id).artifacts["s"].get() == 0 + 1 + 2 + 3 + 4


def test_a_task_steps_artifact_that_never_appears_fails_the_step_that_needs_it_naming_it():
    prod, _ = _templates()
    pipe = _pipe()
    pipe.add_step("prep", base_task_id=prod.id)
    pipe.add_function_step("sum", pc.total, function_kwargs={"xs": "${prep.nope}"}, function_return=["s"])
    with pytest.raises(StepFailed, match="no artifact 'nope'"):
        pipe.start_locally(run_pipeline_steps_locally=True)
    assert pipe.get_pipeline_dag()["prep"].status == "completed"


def test_function_steps_pass_returns_by_reference_and_cache():
    pipe = _pipe()
    pipe.add_parameter("n", 5)
    pipe.add_function_step("make", pc.numbers, function_kwargs={"n": "${pipeline.n}"}, function_return=["xs"], cache_executed_step=True)
    pipe.add_function_step("sum", pc.total, function_kwargs={"xs": "${make.xs}", "bonus": 10}, function_return=["s"])
    assert pipe.start_locally() is True
    dag = pipe.get_pipeline_dag()
    s = Task.get_task(task_id=dag["sum"].task_id)
    assert s.artifacts["s"].get() == 20
    assert s.get_parameters(cast=True)["kwargs_artifacts/xs"] == {"task": dag["make"].task_id, "artifact": "xs"}
    again = _pipe()
    again.add_parameter("n", 5)
    again.add_function_step("make", pc.numbers, function_kwargs={"n": "${pipeline.n}"}, function_return=["xs"], cache_executed_step=True)
    assert again.start_locally() is True
    assert again.get_pipeline_dag()["make"].status == "cached"
    assert again.is_successful()  # a cached step counts as a success


def test_reference_to_an_unknown_return_value_is_rejected():
    pipe = _pipe()
    pipe.add_function_step("make", pc.numbers, function_return=["xs"])
    pipe.add_function_step("sum", pc.total, function_kwargs={"xs": "${make.ys}"})
    with pytest.raises(PipelineError, match="ys"):
        pipe.start_locally()


def test_step_task_created_callback_false_skips_the_subtree_and_failures_fail_the_pipeline():
    pipe = _pipe()
    pipe.add_function_step("make", pc.numbers, function_return=["xs"])
    pipe.add_function_step("sum", pc.total, function_kwargs={"xs": "${make.xs}"})
    pipe.add_function_step("bad", pc.failing)
    completed = []
    with pytest.raises(StepFailed, match="controller step failure"):
        pipe.start_locally(step_task_created_callback=lambda p, node, params: node.name != "make",
                           step_task_completed_callback=lambda p, node: completed.append(node.name))
    dag = pipe.get_pipeline_dag()
    assert pipe.task.get_status() == "failed"
    assert dag["make"].status == "skipped" and dag["sum"].status == "skipped" and dag["bad"].status == "failed"
    assert "controller step failure" in pipe.task.get_status_message() and completed == []
    assert not pipe.is_successful()


def test_time_limit_stops_a_step_that_runs_too_long():
    pipe = _pipe()
    pipe.add_function_step("slow", pc.slow, function_kwargs={"seconds": 30}, time_limit=0.5)
    with pytest.raises(StepFailed, match="'slow'"):
        pipe.start_locally()
    node = pipe.get_pipeline_dag()["slow"]
    assert node.status == "aborted" and node.duration < 10
    assert Task.get_task(task_id=node.task_id).get_status() == "stopped"


def test_get_returns_the_highest_version_and_clone_overrides_args():
    for version in ("1.2", "1.10", "1.9"):
        pipe = PipelineController(name="versions", project="t", version=version)
        pipe.add_parameter("x", 1)
        pipe.create_draft()
    best = PipelineController.get(pipeline_project="t", pipeline_name="versions")
    assert best.data.runtime["pipeline_version"] == "1.10"
    clone = PipelineController.clone(best, parameters={"x": 7})
    assert clone.get_parameters(cast=True) == {"Args/x": 7} and clone.get_status() == "created"


def test_pipeline_nodes_are_recorded_in_the_store():
    pipe = _pipe()
    pipe.add_function_step("make", pc.numbers, function_return=["xs"])
    pipe.start_locally()
    nodes = pipelines.load_nodes(get_database(), pipe.id)
    assert [(n["name"], n["status"]) for n in nodes] == [("make", "completed")]


def test_execution_queue_may_be_a_reference_for_function_and_task_steps():
    template = Task.create_function_task(pc.numbers, task_name="numbers", project_name="t")
    pipe = _pipe()
    pipe.add_parameter("queue", "fast")
    pipe.add_function_step("a", pc.numbers, execution_queue="${pipeline.queue}")
    pipe.add_step("b", base_task_id=template.id, execution_queue="${pipeline.queue}")
    assert pipe.start_locally() is True
    for name in ("a", "b"):
        node = pipe.get_pipeline_dag()[name]
        assert node.queue == "fast" and Task.get_task(task_id=node.task_id).data.queue == "fast"


def test_run_pipeline_steps_locally_keeps_steps_off_shared_queues():
    local = _pipe()
    local.add_function_step("make", pc.numbers, function_return=["xs"], execution_queue="gpu")
    assert local.start_locally(run_pipeline_steps_locally=True) is True
    assert local.get_pipeline_dag()["make"].queue.startswith("local-")
    shared = _pipe()
    shared.add_function_step("make", pc.numbers, function_return=["xs"], execution_queue="gpu")
    assert shared.start_locally(run_pipeline_steps_locally=False) is True
    assert shared.get_pipeline_dag()["make"].queue == "gpu"


def test_non_basic_literal_kwargs_are_pipeline_artifacts_passed_by_reference_and_cached_by_value():
    import pandas as pd

    frame = pd.DataFrame({"v": [1, 2, 3]})

    def run():
        pipe = _pipe()
        pipe.add_function_step("sum", pc.total, function_kwargs={"xs": frame["v"].tolist(), "bonus": 1}, function_return=["s"])
        pipe.add_function_step("frame_sum", pc.frame_total, function_kwargs={"df": frame}, function_return=["s"],
                               cache_executed_step=True)
        assert pipe.start_locally() is True
        return pipe

    first = run()
    assert first.task.artifacts["frame_sum.df"].get().equals(frame)
    step = Task.get_task(task_id=first.get_pipeline_dag()["frame_sum"].task_id)
    assert step.get_parameters(cast=True)["kwargs_artifacts/df"] == {"task": first.id, "artifact": "frame_sum.df"}
    assert step.artifacts["s"].get() == 6
    assert run().get_pipeline_dag()["frame_sum"].status == "cached"


def test_model_and_task_field_references_resolve(tmp_path):
    saver = Task.create_function_task(pc.saves_weights, task_name="saver", project_name="t")
    reader = Task.create_function_task(pc.reads_file, task_name="reader", project_name="t")
    pipe = _pipe()
    pipe.add_step("train", base_task_id=saver.id, parameter_override={"kwargs/folder": str(tmp_path)})
    pipe.add_step("use", base_task_id=reader.id, parameter_override={
        "kwargs/url": "${train.models.output.-1.url}", "General/source": "${train.id}", "General/name": "${train.name}"})
    assert pipe.start_locally() is True
    dag = pipe.get_pipeline_dag()
    use = Task.get_task(task_id=dag["use"].task_id)
    assert use.artifacts["return_object"].get() == "trained weights"
    params = use.get_parameters(cast=True)
    assert params["General/source"] == dag["train"].task_id and params["General/name"] == "train"


def test_cached_task_step_whose_outputs_are_gone_runs_again():
    prod, _ = _templates()

    def run():
        pipe = _pipe()
        pipe.add_step("prep", base_task_id=prod.id, cache_executed_step=True)
        assert pipe.start_locally() is True
        return pipe.get_pipeline_dag()["prep"]

    first = run()
    assert run().status == "cached"
    # its outputs' bytes are gone (as after a gc): the hit no longer loads, so it is a miss
    get_database().execute("DELETE FROM inline_blobs WHERE hash IN (SELECT hash FROM artifacts WHERE task = ?)", (first.task_id,))
    again = run()
    assert again.status == "completed" and again.task_id != first.task_id


def test_stop_after_a_finished_run_keeps_its_status_as_in_clearmls_example():
    pipe = _pipe()
    pipe.add_function_step("make", pc.numbers, function_kwargs={"n": 2}, function_return=["xs"])
    assert pipe.start_locally(run_pipeline_steps_locally=True)
    pipe.wait()
    pipe.stop()  # ClearML's example: start(); wait(); stop()
    assert pipe.task.get_status() == "completed" and pipe.is_successful()


def test_steps_report_on_the_pipeline_through_the_class_and_tags_apply():
    pipe = _pipe()
    pipe.add_tags(["nightly"])
    pipe.add_function_step("report", pc.reports_to_pipeline, function_kwargs={"x": 7}, function_return=["x"])
    assert pipe.start_locally(run_pipeline_steps_locally=True)
    task = Task.get_task(task_id=pipe.id)
    assert task.get_last_scalar_metrics()["from-step"]["x"]["last"] == 7.0
    assert task.artifacts["from-step"].get() == {"x": 7} and "nightly" in task.get_tags()


def test_a_zero_time_limit_means_no_limit():
    pipe = _pipe()
    pipe.set_pipeline_execution_time_limit(0)
    pipe.add_function_step("make", pc.numbers, function_kwargs={"n": 2}, function_return=["xs"])
    assert pipe.start_locally(run_pipeline_steps_locally=True)


def test_unpicklable_kwargs_and_unknown_continue_keys_fail_before_any_task_exists():
    import threading

    pipe = _pipe()
    pipe.add_function_step("a", pc.total, function_kwargs={"xs": threading.Lock()})
    with pytest.raises(PipelineError, match=r"step 'a': argument 'xs' of type _thread.lock cannot be pickled"):
        pipe.start_locally(run_pipeline_steps_locally=True)
    pipe = _pipe()
    pipe.add_function_step("a", pc.numbers, continue_behaviour={"skip_children": False})
    with pytest.raises(PipelineError, match="step 'a': continue_behaviour key 'skip_children' is unknown"):
        pipe.start_locally(run_pipeline_steps_locally=True)
    assert Task.get_tasks() == []


def test_unclosed_references_and_unknown_function_kwargs_are_refused_up_front():
    pipe = _pipe()
    with pytest.raises(PipelineError, match=r"step 'a': function 'numbers' has no parameter\(s\) m; it takes \(n: int = 3\)"):
        pipe.add_function_step("a", pc.numbers, function_kwargs={"m": 2})
    prod, _ = _templates()
    pipe.add_step("b", base_task_id=prod.id, parameter_override={"kwargs/rows": "${pipeline.n"})
    with pytest.raises(PipelineError, match=r"step 'b': '\$\{pipeline.n' holds a '\$\{' that is not closed"):
        pipe.start_locally(run_pipeline_steps_locally=True)
    assert Task.get_tasks(task_filter={"type": ["controller"]}) == []


def test_wait_after_start_without_waiting_serves_the_run_and_the_object_shows_it(tmp_path):
    import textwrap

    script = tmp_path / "nowait.py"
    script.write_text(textwrap.dedent("""
        from labpipe import PipelineController

        def double(x: int = 2):
            return 2 * x

        pipe = PipelineController(name="nowait", project="t", version="1")
        pipe.add_function_step("double", double, function_kwargs={"x": 21}, function_return=["y"])
        assert pipe.start(queue="services", wait=False)
        pipe.wait(timeout=60)
        dag = pipe.get_pipeline_dag()
        print(pipe.task.reload().get_status(), dag["double"].status, pipe.get_processed_nodes())
    """))
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["completed", "completed", "['double']"]


def test_configuration_overrides_reach_the_steps_connect_configuration(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "from labpipe import Task\n"
        "task = Task.init(project_name='t', task_name='train')\n"
        "model = task.connect_configuration({'depth': 2}, name='model')\n"
        "task.upload_artifact('used', dict(model))\n"
    )
    template = Task.create(project_name="t", task_name="train-template", script=str(script))
    pipe = _pipe()
    pipe.add_parameter("depth", 9)
    pipe.add_step("train", base_task_id=template.id, configuration_overrides={"model": {"depth": "${pipeline.depth}"}},
                  task_overrides={"comment": "deeper"})
    pipe.add_step("plain", base_task_id=template.id)
    assert pipe.start_locally() is True
    dag = pipe.get_pipeline_dag()
    train, plain = (Task.get_task(task_id=dag[n].task_id) for n in ("train", "plain"))
    assert train.artifacts["used"].get() == {"depth": 9} and train.comment == "deeper"
    assert plain.artifacts["used"].get() == {"depth": 2}
    assert template.get_configurations() == {}  # the template is cloned, never changed


def test_callbacks_read_clearmls_node_attributes():
    prod, cons = _templates()
    seen = {}

    def pre(pipeline, node, override):
        seen["pre"] = (node.name, node.base_task_id, node.parameters, node.clone_task, node.executed, node.job)
        return True

    def post(pipeline, node):
        seen["post"] = (node.executed, node.job.task.id, node.job.task_id(), node.job_started <= node.job_ended,
                        node.cache_executed_step, node.timeout, node.continue_on_fail, node.monitor_metrics, node.skip_job)

    pipe = _pipe()
    pipe.add_step("prep", base_task_id=prod.id, parameter_override={"kwargs/rows": 2}, pre_execute_callback=pre,
                  post_execute_callback=post, cache_executed_step=True, time_limit=60, monitor_metrics=[("prep", "rows")])
    assert pipe.start_locally(run_pipeline_steps_locally=True) is True
    task_id = pipe.get_pipeline_dag()["prep"].task_id
    assert seen["pre"] == ("prep", prod.id, {"kwargs/rows": 2}, True, None, None)
    assert seen["post"] == (task_id, task_id, task_id, True, True, 60, False, [("prep", "rows")], False)
