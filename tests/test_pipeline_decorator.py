"""PipelineDecorator: modes, proxies, DAG recording, naming, failures, callbacks, monitors."""

from __future__ import annotations

import pipeline_components as pc
import pytest

from labpipe import PipelineDecorator, PipelineError, StepFailed, Task
from labpipe.store import pipelines
from labpipe.store.db import get_database


def _nodes(pipeline_id):
    return {n["name"]: n for n in pipelines.load_nodes(get_database(), pipeline_id)}


def _pipeline_task(name):
    return Task.get_tasks(project_name="tests", task_filter={"type": ["controller"]})[0]


def test_component_called_outside_a_pipeline_is_a_plain_call():
    assert pc.add_up([1, 2], bonus=3) == 6
    assert Task.get_tasks() == []


def test_a_pipeline_without_a_version_counts_up_from_1_0_0_as_clearml_does():
    @PipelineDecorator.pipeline(name="unversioned", project="p")
    def unversioned():
        return 1

    @PipelineDecorator.pipeline(name="pinned", project="p", version="2.5")
    def pinned():
        return 1

    PipelineDecorator.debug_pipeline()
    try:
        for _ in range(3):
            unversioned()
        pinned()
        unversioned()
    finally:
        PipelineDecorator._mode = "remote"
    runs = sorted(Task.get_tasks(project_name="p", task_filter={"type": ["controller"]}), key=lambda t: t.data.created)
    versions = [(t.data.runtime["pipeline_name"], t.data.runtime["pipeline_version"]) for t in runs]
    assert versions == [("unversioned", "1.0.0"), ("unversioned", "1.0.1"), ("unversioned", "1.0.2"), ("pinned", "2.5"),
                        ("unversioned", "1.0.3")]


def test_debug_mode_runs_plain_calls_and_records_only_the_pipeline_run():
    PipelineDecorator.debug_pipeline()
    try:
        assert pc.chain_pipeline(n=3, bonus=10) == 13
    finally:
        PipelineDecorator._mode = "remote"
    (pipe,) = Task.get_tasks()  # the run itself; its steps were plain calls, not tasks
    assert pipe.task_type == "controller" and pipe.get_status() == "completed"
    assert pipe.get_parameters(cast=True) == {"Args/n": 3, "Args/bonus": 10}


def test_debug_mode_logic_reports_on_its_pipeline_task():
    @PipelineDecorator.pipeline(name="debug-report", project="tests", version="1")
    def report():
        pipe = PipelineDecorator.get_current_pipeline()
        assert Task.current_task().id == pipe.id
        PipelineDecorator.get_logger().report_scalar("p", "s", 2.5, 0)
        PipelineDecorator.upload_artifact("note", "hi")
        return pipe.id

    PipelineDecorator.debug_pipeline()
    try:
        pid = report()
    finally:
        PipelineDecorator._mode = "remote"
    task = Task.get_task(task_id=pid)
    assert task.get_last_scalar_metrics()["p"]["s"]["last"] == 2.5 and task.artifacts["note"].get() == "hi"


def test_in_local_mode_the_logics_current_task_is_the_controller(local_mode):
    @PipelineDecorator.pipeline(name="whoami", project="tests", version="1")
    def whoami():
        return Task.current_task().id, PipelineDecorator.get_current_pipeline().id

    current, pipe = whoami()
    assert current == pipe and Task.get_task(task_id=pipe).task_type == "controller"
    assert Task.current_task() is None  # outside the logic again


def test_local_mode_runs_steps_as_tasks_and_passes_results_by_reference(local_mode):
    assert pc.chain_pipeline(n=4, bonus=1) == 7
    pipe = _pipeline_task("chain")
    assert pipe.get_status() == "completed" and pipe.task_type == "controller"
    assert pipe.get_parameters(cast=True) == {"Args/n": 4, "Args/bonus": 1}
    nodes = _nodes(pipe.id)
    assert list(nodes) == ["make_numbers", "add_up"]
    assert nodes["add_up"]["parents"] == ["make_numbers"] and all(n["status"] == "completed" for n in nodes.values())
    make, add = (Task.get_task(task_id=nodes[n]["task"]) for n in ("make_numbers", "add_up"))
    assert make.parent == pipe.id and make.get_parameters(cast=True)["kwargs/n"] == 4
    # the proxy travelled as a reference to the first step's artifact, not as data
    assert add.get_parameters(cast=True)["kwargs_artifacts/numbers"] == {"task": make.id, "artifact": "numbers"}
    assert add.artifacts["total"].get() == 7


def test_repeated_calls_are_named_with_suffixes_and_each_is_a_step(local_mode):
    assert pc.sweep_pipeline(values=(2, 3, 4)) == [4, 9, 16]
    nodes = _nodes(_pipeline_task("sweep").id)
    assert list(nodes) == ["square", "square_1", "square_2"]
    assert len({n["task"] for n in nodes.values()}) == 3


def test_multiple_return_values_unpack_into_proxies(local_mode):
    @PipelineDecorator.pipeline(name="pairs", project="tests", version="1")
    def pairs():
        a, b = pc.split_pair(pc.make_numbers(3))
        return list(a) + [len(b)]

    assert pairs() == [0, 2]


def test_proxy_behaves_as_the_value_in_pipeline_logic(local_mode):
    @PipelineDecorator.pipeline(name="proxy", project="tests", version="1")
    def logic():
        total = pc.add_up(pc.make_numbers(5))
        numbers = pc.make_numbers(3, salt="x")
        out = [total + 1, 2 * total, total > 5, f"{total:03d}", numbers[1], list(numbers), len(numbers), 2 in numbers]
        if total:
            out.append("truthy")
        return out

    assert logic() == [11, 20, True, "010", 1, [0, 1, 2], 3, True, "truthy"]


def test_failed_step_fails_the_pipeline_naming_step_task_and_error(local_mode):
    @PipelineDecorator.pipeline(name="fails", project="tests", version="1")
    def fails():
        value = pc.explode("kaput 17")
        return value + 1

    with pytest.raises(StepFailed, match=r"step 'explode' \(task [0-9a-f]{32}\) failed: .*ValueError: kaput 17"):
        fails()
    assert _pipeline_task("fails").get_status() == "failed"


def test_continue_on_fail_lets_the_pipeline_complete_and_skips_dependents(local_mode):
    @PipelineDecorator.pipeline(name="tolerant", project="tests", version="1")
    def tolerant():
        bad = pc.explode_allowed()
        pc.add_up(bad)  # depends on the failed step: skipped
        return int(pc.add_up(pc.make_numbers(3)))

    assert tolerant() == 3
    pipe = _pipeline_task("tolerant")
    nodes = _nodes(pipe.id)
    assert pipe.get_status() == "completed"
    assert nodes["explode_allowed"]["status"] == "failed" and nodes["add_up"]["status"] == "skipped"
    assert nodes["add_up_1"]["status"] == "completed"


def test_return_values_count_mismatch_fails_saying_expected_and_got(local_mode):
    @PipelineDecorator.pipeline(name="mismatch", project="tests", version="1")
    def mismatch():
        a, b = pc.wrong_count()
        return a + b

    with pytest.raises(StepFailed, match="expected 2 return values.*got 3"):
        mismatch()


def test_missing_import_in_a_component_says_it_runs_as_a_standalone_script(local_mode):
    @PipelineDecorator.pipeline(name="noimport", project="tests", version="1")
    def noimport():
        return pc.uses_missing_import() + 0

    with pytest.raises(StepFailed, match="np"):
        noimport()
    node = _nodes(_pipeline_task("noimport").id)["uses_missing_import"]
    assert "import" in Task.get_task(task_id=node["task"]).get_status_message()


def test_non_picklable_argument_is_an_error_before_anything_runs(local_mode):
    import threading

    @PipelineDecorator.pipeline(name="unpicklable", project="tests", version="1")
    def unpicklable():
        return pc.add_up(threading.Lock())

    with pytest.raises(PipelineError, match=r"step 'add_up': argument 'numbers' of type _thread\.lock cannot be pickled"):
        unpicklable()
    assert [t.name for t in Task.get_tasks(task_filter={"type": ["training"]})] == []


def test_retry_on_failure_reruns_a_failed_step(local_mode, tmp_path):
    @PipelineDecorator.pipeline(name="retry", project="tests", version="1")
    def retry(marker):
        return int(pc.flaky(marker))

    assert retry(str(tmp_path / "count")) == 2
    assert (tmp_path / "count").read_text() == "3"


def test_monitored_metrics_and_artifacts_are_copied_to_the_pipeline(local_mode):
    @PipelineDecorator.pipeline(name="monitor", project="tests", version="1")
    def monitor():
        return int(pc.reports_metrics())

    monitor()
    pipe = _pipeline_task("monitor")
    assert pipe.get_reported_scalars()["loss"]["train"] == {"x": [0, 1], "y": [0.5, 0.25]}
    assert pipe.artifacts["copied"].get() == {"k": 1}


def test_pre_execute_callback_returning_false_skips_the_step_and_its_subtree(local_mode):
    seen = []

    def gate(pipeline, node, params):
        seen.append(node.name)
        return node.name != "make_numbers"

    guarded = PipelineDecorator.component(return_values=["numbers"], pre_execute_callback=gate, name="make_numbers")(
        pc.make_numbers.func
    )

    @PipelineDecorator.pipeline(name="gated", project="tests", version="1")
    def gated():
        pc.add_up(guarded(3))
        return int(pc.add_up(pc.make_numbers(2)))

    assert gated() == 1
    nodes = _nodes(_pipeline_task("gated").id)
    assert nodes["make_numbers"]["status"] == "skipped" and nodes["add_up"]["status"] == "skipped"
    assert "make_numbers" in seen


def test_skipped_steps_get_their_status_change_callback_and_using_one_says_it_was_skipped(local_mode):
    changes = []

    def watch(pipeline, node, previous):
        changes.append((node.name, previous, node.status))

    guarded = PipelineDecorator.component(return_values=["numbers"], pre_execute_callback=lambda p, n, a: False,
                                          name="guarded", status_change_callback=watch)(pc.make_numbers.func)
    below = PipelineDecorator.component(return_values=["total"], name="below", status_change_callback=watch)(pc.add_up.func)

    @PipelineDecorator.pipeline(name="skipped-callbacks", project="tests", version="1")
    def logic():
        return int(below(guarded(3)))

    with pytest.raises(StepFailed, match=r"step 'below' was skipped \(parent (step )?'guarded' (was )?skipped\), so its return value"):
        logic()
    assert ("guarded", "pending", "skipped") in changes and ("below", "pending", "skipped") in changes


def test_add_pipeline_tags_and_target_project_apply_to_steps(local_mode):
    @PipelineDecorator.pipeline(name="tagged", project="tests", version="1", add_pipeline_tags=True, target_project="tests/steps")
    def tagged():
        return int(pc.make_numbers(2)[1])

    assert tagged() == 1
    pipe = _pipeline_task("tagged")
    step = Task.get_tasks(project_name="tests/steps")[0]
    assert step.get_tags() == [f"pipe: {pipe.id}"] and step.parent == pipe.id


def test_nested_pipeline_is_one_node_whose_task_is_a_pipeline(local_mode):
    @PipelineDecorator.pipeline(name="outer", project="tests", version="1")
    def outer():
        inner_total = pc.chain_pipeline(n=3, bonus=0)
        return int(pc.add_up([inner_total, 1]))

    assert outer() == 4
    outer_task = [t for t in Task.get_tasks(project_name="tests") if t.data.runtime.get("pipeline_name") == "outer"][0]
    node = _nodes(outer_task.id)["chain"]
    assert node["kind"] == "pipeline" and node["status"] == "completed"
    inner = Task.get_task(task_id=node["task"])
    assert inner.task_type == "controller" and inner.parent == outer_task.id
    assert set(_nodes(inner.id)) == {"make_numbers", "add_up"}


def test_nested_pipeline_with_a_named_return_value_gives_its_result_to_the_outer_one(local_mode):
    @PipelineDecorator.pipeline(name="outer-named", project="tests", version="1")
    def outer():
        return int(pc.named_result_pipeline(n=3)) + 1

    assert outer() == 3 + 10 + 1
    inner = [t for t in Task.get_tasks(project_name="tests") if t.data.runtime.get("pipeline_name") == "named-result"][0]
    assert inner.artifacts["res"].get() == 13


def test_proxies_inside_a_list_argument_do_not_hold_up_the_call(local_mode):
    import time

    @PipelineDecorator.pipeline(name="fan-in", project="tests", version="1")
    def fan_in():
        parts = [pc.sleepy(0.8), pc.sleepy(0.8)]
        t0 = time.monotonic()
        total = pc.add_up(parts)  # returns at once: the proxies are resolved by the step, not here
        returned_after = time.monotonic() - t0
        return returned_after, float(total)

    returned_after, total = fan_in()
    assert returned_after < 0.4 and total == 1.6


def test_get_current_pipeline_and_pipeline_logger(local_mode):
    @PipelineDecorator.pipeline(name="current", project="tests", version="1")
    def current():
        pipe = PipelineDecorator.get_current_pipeline()
        PipelineDecorator.get_logger().report_scalar("p", "s", 1.5, 0)
        PipelineDecorator.upload_artifact("note", "hello")
        return pipe.id

    pid = current()
    task = Task.get_task(task_id=pid)
    assert task.get_last_scalar_metrics()["p"]["s"]["last"] == 1.5 and task.artifacts["note"].get() == "hello"


def test_abort_on_failure_stops_running_steps_at_once(local_mode):
    import time

    @PipelineDecorator.pipeline(name="abort", project="tests", version="1", abort_on_failure=True)
    def abort():
        slow = pc.sleepy(30)
        pc.explode("fast failure")
        return slow + 0

    t0 = time.time()
    with pytest.raises(StepFailed):
        abort()
    assert time.time() - t0 < 15
    nodes = _nodes(_pipeline_task("abort").id)
    assert nodes["sleepy"]["status"] == "aborted" and nodes["explode"]["status"] == "failed"
    assert Task.get_task(task_id=nodes["sleepy"]["task"]).get_status() == "stopped"


def test_retry_on_failure_callable_decides_and_status_change_callback_sees_changes(local_mode, tmp_path):
    decisions, changes = [], []

    def retry(pipeline, node, retries):
        decisions.append((node.name, retries))
        return retries < 5

    def watch(pipeline, node, previous_status):
        changes.append((node.name, previous_status, node.status))

    step = PipelineDecorator.component(return_values=["value"], retry_on_failure=retry, status_change_callback=watch,
                                       name="flaky")(pc.flaky.func)

    @PipelineDecorator.pipeline(name="retry-callable", project="tests", version="1")
    def logic(marker):
        return int(step(marker))

    assert logic(str(tmp_path / "count")) == 2
    assert decisions == [("flaky", 0), ("flaky", 1)]
    assert changes[0] == ("flaky", "pending", "queued") and changes[-1][2] == "completed"


def test_args_map_puts_arguments_in_their_sections(local_mode):
    @PipelineDecorator.pipeline(name="argsmap", project="tests", version="1", args_map={"Data": ["n"]})
    def mapped(n=3, bonus=0):
        return int(pc.add_up(pc.make_numbers(n), bonus=bonus))

    assert mapped(n=3, bonus=1) == 4
    assert _pipeline_task("argsmap").get_parameters(cast=True) == {"Data/n": 3, "Args/bonus": 1}


def test_parallel_instances_run_concurrently_and_wait_for_multi_pipelines_collects_them(local_mode):
    @PipelineDecorator.pipeline(name="multi", project="tests", version="1", multi_instance_support="parallel")
    def multi(seconds):
        return float(pc.sleepy(seconds))

    for seconds in (0.2, 0.3, 0.2, 0.3):
        assert multi(seconds) is None  # they return at once
    assert PipelineDecorator.wait_for_multi_pipelines() == [0.2, 0.3, 0.2, 0.3]
    names = sorted(t.name for t in Task.get_tasks(project_name="tests") if t.task_type == "controller")
    assert names == ["multi", "multi #2", "multi #3", "multi #4"]  # numbered, even when started together


def test_monitor_models_wildcard_picks_the_latest_lexicographic_match(local_mode, tmp_path):
    @PipelineDecorator.pipeline(name="models", project="tests", version="1")
    def models(folder):
        return int(pc.saves_models(folder))

    models(str(tmp_path))
    assert [m.name for m in _pipeline_task("models").models["output"]] == ["weights_b"]


def test_remote_mode_without_waiting_only_enqueues_the_controller():
    PipelineDecorator.run_remotely(wait=False)
    try:
        assert pc.chain_pipeline(n=2) is None
    finally:
        PipelineDecorator.run_remotely(wait=True)
    pipe = _pipeline_task("chain")
    assert pipe.get_status() == "queued" and pipe.data.queue == "services"
    assert pipe.data.script["pipeline_function"] == "chain_pipeline" and pipe.get_parameters(cast=True) == {"Args/n": 2, "Args/bonus": 1}


def test_remote_mode_without_waiting_tells_which_task_it_enqueued_and_what_runs_it(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "enqueue_only.py"
    script.write_text(textwrap.dedent('''
        from labpipe import PipelineDecorator

        @PipelineDecorator.pipeline(name="later", project="p", version="1")
        def later():
            return 1

        PipelineDecorator.run_remotely(wait=False)
        later()
    '''))
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (task,) = Task.get_tasks(task_name="later")
    assert task.id in proc.stderr and "labpipe agent --queue services" in proc.stderr


def test_a_finished_run_leaves_no_wake_up_channel_behind(local_mode, store):
    assert pc.chain_pipeline(n=2) == 2
    assert not [p for p in (store / "wake").iterdir() if p.name.startswith("pipeline-")]


def test_remote_mode_without_a_script_file_says_to_run_locally(store):
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent('''
        from labpipe import PipelineDecorator
        exec(compile("""
        @PipelineDecorator.pipeline(name='typed-in', project='p', version='1')
        def main():
            return 1
        """, "<typed in>", "exec"))
        main()
    ''')
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "does not come from a script file" in proc.stderr and "run_locally()" in proc.stderr
    assert Task.get_tasks() == []  # nothing enqueued that no worker could run


def test_what_the_logic_prints_in_local_mode_is_the_runs_console_too(local_mode, capsys):
    @PipelineDecorator.pipeline(name="chatty", project="tests", version="1")
    def chatty():
        total = int(pc.add_up(pc.make_numbers(3)))
        print(f"the total is {total}")
        return total

    assert chatty() == 3
    assert "the total is 3" in capsys.readouterr().out  # still printed here
    assert "the total is 3" in _pipeline_task("chatty").get_console()
