"""The pipeline DAG model: building, checking, advancing and serialising a graph of steps."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from labpipe.errors import PipelineError
from labpipe.pipeline.dag import DAG, NODE_STATUSES, Node


def diamond() -> DAG:
    """load -> (a, b) -> join, plus an independent root."""
    return DAG(
        [
            Node("load"),
            Node("a", ["load"]),
            Node("b", ["load"]),
            Node("join", ["a", "b"]),
            Node("other"),
        ]
    )


# -- building ---------------------------------------------------------------------------------


def test_duplicate_step_name_is_rejected():
    dag = DAG([Node("x")])
    with pytest.raises(PipelineError, match="step 'x' is defined twice"):
        dag.add(Node("x"))
    with pytest.raises(PipelineError, match="defined twice"):
        dag.add_deferred(Node("x"))


def test_unknown_parent_is_rejected_and_known_steps_are_listed():
    dag = DAG([Node("prep"), Node("train", ["prep"])])
    with pytest.raises(PipelineError) as err:
        dag.add(Node("score", ["trian"]))
    message = str(err.value)
    assert "step 'score' names parent 'trian', which is not a step" in message
    assert "known steps: 'prep', 'train'" in message
    assert "score" not in dag


def test_step_that_names_itself_as_parent_is_rejected():
    with pytest.raises(PipelineError, match="names itself as a parent"):
        DAG().add(Node("loop", ["loop"]))


def test_unknown_status_and_kind_are_rejected():
    with pytest.raises(PipelineError, match="status 'done'"):
        DAG([Node("x", status="done")])
    with pytest.raises(PipelineError, match="kind 'script'"):
        DAG([Node("x", kind="script")])
    dag = DAG([Node("x")])
    with pytest.raises(PipelineError, match="status 'finished'"):
        dag.set_status("x", "finished")
    assert dag["x"].status == "pending"


def test_parents_given_as_a_string_are_rejected():
    dag = DAG([Node("ab")])
    with pytest.raises(PipelineError, match="must be a list"):
        dag.add(Node("c", "ab"))


def test_repeated_parents_are_collapsed_in_order():
    dag = DAG([Node("a"), Node("b")])
    assert dag.add(Node("c", ["b", "a", "b"])).parents == ["b", "a"]


def test_deferred_steps_may_arrive_before_their_parents():
    dag = DAG()
    dag.add_deferred(Node("train", ["prep"]))
    dag.add_deferred(Node("prep"))
    dag.validate()
    assert dag.layers() == [["prep"], ["train"]]
    assert dag.ready() == ["prep"]


def test_validate_reports_a_parent_that_never_arrived():
    dag = DAG()
    dag.add_deferred(Node("train", ["prep"]))
    with pytest.raises(PipelineError, match="step 'train' names parent 'prep', which is not a step"):
        dag.validate()


def test_cycle_is_reported_with_the_steps_in_it():
    dag = DAG([Node("outside")])
    dag.add_deferred(Node("a", ["c", "outside"]))
    dag.add_deferred(Node("b", ["a"]))
    dag.add_deferred(Node("c", ["b"]))
    dag.add_deferred(Node("after", ["c"]))
    with pytest.raises(PipelineError, match="form a cycle") as err:
        dag.validate()
    message = str(err.value)
    assert "'a', 'b', 'c'" in message
    assert "a -> b -> c -> a" in message
    assert "outside" not in message and "after" not in message
    with pytest.raises(PipelineError, match="cycle"):
        dag.layers()


def test_long_chain_validates_without_recursion():
    dag = DAG([Node("s0")])
    for i in range(1, 5000):
        dag.add(Node(f"s{i}", [f"s{i - 1}"]))
    dag.validate()
    assert len(dag.layers()) == 5000


def test_unknown_step_lookup_names_the_step():
    with pytest.raises(PipelineError, match="no step named 'nope'"):
        diamond()["nope"]
    assert "nope" not in diamond()


# -- reading ----------------------------------------------------------------------------------


def test_iteration_and_names_keep_added_order():
    dag = diamond()
    assert dag.names() == ["load", "a", "b", "join", "other"]
    assert [n.name for n in dag] == dag.names()
    assert len(dag) == 5


def test_children_and_descendants():
    dag = diamond()
    assert dag.children("load") == ["a", "b"]
    assert dag.children("join") == []
    assert dag.descendants("load") == {"a", "b", "join"}
    assert dag.descendants("other") == set()


def test_layers_group_steps_by_depth_in_added_order():
    dag = DAG([Node("r1"), Node("r2"), Node("m", ["r1"]), Node("deep", ["m", "r2"]), Node("n", ["r2"])])
    assert dag.layers() == [["r1", "r2"], ["m", "n"], ["deep"]]
    assert DAG().layers() == []


def test_layers_match_networkx_topological_generations():
    nx = pytest.importorskip("networkx")
    rng = random.Random(7)
    names = [f"s{i}" for i in range(200)]
    order = names[:]
    rng.shuffle(order)  # added out of order, so insertion order is not topological
    dag = DAG()
    graph = nx.DiGraph()
    for name in order:
        i = names.index(name)
        parents = rng.sample(names[:i], k=min(i, rng.randint(0, 3)))
        dag.add_deferred(Node(name, parents))
        graph.add_node(name)
        graph.add_edges_from((p, name) for p in parents)
    ours = dag.layers()
    theirs = [sorted(g) for g in nx.topological_generations(graph)]
    assert [sorted(layer) for layer in ours] == theirs
    position = {name: i for i, name in enumerate(dag.names())}
    assert all(layer == sorted(layer, key=position.__getitem__) for layer in ours)


# -- advancing --------------------------------------------------------------------------------


def test_ready_lists_pending_steps_whose_parents_all_succeeded_in_added_order():
    dag = diamond()
    assert dag.ready() == ["load", "other"]
    dag.set_status("load", "completed")
    assert dag.ready() == ["a", "b", "other"]
    dag.set_status("a", "running")
    dag.set_status("b", "cached")
    assert dag.ready() == ["other"]  # join still waits for a; a is no longer pending
    dag.set_status("a", "completed")
    assert dag.ready() == ["join", "other"]


def test_failed_parent_keeps_children_out_of_ready():
    dag = diamond()
    dag.set_status("load", "failed", error="boom")
    assert dag.ready() == ["other"]


def test_skip_subtree_marks_pending_descendants_only():
    dag = DAG([Node("a"), Node("b", ["a"]), Node("c", ["b"]), Node("d", ["a"], status="running"), Node("e")])
    dag.set_status("a", "failed")
    skipped = dag.skip_subtree("a", "parent 'a' failed")
    assert skipped == ["b", "c"]
    assert dag["c"].status == "skipped" and dag["c"].error == "parent 'a' failed"
    assert dag["a"].status == "failed"
    assert dag["d"].status == "running"
    assert dag["e"].status == "pending"
    assert dag.skip_subtree("a", "again") == []


def test_set_status_sets_other_fields_and_refuses_unknown_ones():
    dag = diamond()
    node = dag.set_status("load", "completed", task_id="t1", started=10.0, completed=12.5, queue="default")
    assert (node.status, node.task_id, node.duration, node.queue) == ("completed", "t1", 2.5, "default")
    with pytest.raises(PipelineError, match="colour"):
        dag.set_status("load", "completed", colour="red")
    with pytest.raises(PipelineError, match="parents"):
        dag.set_status("load", "completed", parents=[])


def test_node_duration_done_and_succeeded():
    assert Node("x").duration is None
    assert Node("x", started=5.0).duration is None
    assert Node("x", started=5.0, completed=5.25).duration == 0.25
    done = {s: Node("x", status=s).done for s in NODE_STATUSES}
    assert [s for s, d in done.items() if d] == ["completed", "cached", "failed", "aborted", "skipped"]
    assert [s for s in NODE_STATUSES if Node("x", status=s).succeeded] == ["completed", "cached"]


def test_summary_counts_every_status():
    dag = diamond()
    dag.set_status("load", "cached")
    dag.set_status("a", "completed")
    dag.set_status("b", "failed")
    dag.skip_subtree("b", "parent 'b' failed")
    assert dag.summary() == {
        "pending": 1,
        "queued": 0,
        "running": 0,
        "completed": 1,
        "cached": 1,
        "failed": 1,
        "aborted": 0,
        "skipped": 1,
        "total": 5,
    }
    assert DAG().summary()["total"] == 0


# -- serialising ------------------------------------------------------------------------------


def test_json_round_trip_keeps_every_field_and_order():
    dag = DAG()
    dag.add_deferred(Node("train", ["prep"], kind="task", queue="gpu", stage="train"))
    dag.add_deferred(
        Node(
            "prep",
            status="cached",
            task_id="abc123",
            started=1.5,
            completed=2.75,
            extra={"parameter_override": {"Args/x": "${a.artifacts.b.url}"}, "n": [1, 2]},
        )
    )
    dag.set_status("train", "failed", error="ValueError: bad\nline two", task_id="t9")
    text = dag.to_json()
    again = DAG.from_json(text)
    assert again.names() == ["train", "prep"]
    assert [vars(n) for n in again] == [vars(n) for n in dag]
    assert again.to_json() == text
    assert json.loads(text)["version"] == 1


def test_to_json_rejects_extra_that_is_not_json():
    dag = DAG([Node("x", extra={"fn": print})])
    with pytest.raises(PipelineError, match="JSON-able"):
        dag.to_json()


def test_from_dict_ignores_unknown_node_keys_and_refuses_newer_format():
    data = DAG([Node("x")]).to_dict()
    data["nodes"][0]["colour"] = "blue"
    assert DAG.from_dict(data).names() == ["x"]
    with pytest.raises(PipelineError, match="upgrade labpipe"):
        DAG.from_dict({"version": 99, "nodes": []})


def test_from_dict_checks_the_graph():
    data = {"version": 1, "nodes": [{"name": "a", "parents": ["b"]}, {"name": "b", "parents": ["a"]}]}
    with pytest.raises(PipelineError, match="cycle"):
        DAG.from_dict(data)


def test_importing_the_dag_modules_does_not_import_matplotlib_or_networkx():
    code = (
        "import sys, labpipe.pipeline.dag, labpipe.pipeline.dag_plot\n"
        "heavy = [m for m in ('matplotlib', 'networkx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
