"""Drawing a pipeline DAG: one rank per layer, few crossings, folded wide layers, a legend for every
colour, failed boxes with their error, and the text formats (dot, mermaid) with every node and edge."""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from labpipe import PipelineDecorator
from labpipe.pipeline.dag import DAG, NODE_STATUSES, Node
from labpipe.pipeline.dag_formats import format_for, render_dag
from labpipe.pipeline.dag_layout import BOX_W, FOLD_ROWS, crossings, layout_dag
from labpipe.pipeline.dag_plot import MAX_PIXELS, STATUS_COLORS, figure, format_duration, plot_dag
from labpipe.pipeline.dag_text import to_dot, to_mermaid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pixels(png: bytes):
    """The image as an (h, w, 3) uint8 array."""
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(png))
    return (image[..., :3] * 255).round().astype("uint8")


def colour_count(image, hex_colour: str) -> int:
    """How many pixels have exactly this colour (box fills are flat, so they do)."""
    import numpy as np

    rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    return int(np.all(image == rgb, axis=-1).sum())


def fan(n: int) -> DAG:
    """prepare -> n parallel steps -> aggregate."""
    dag = DAG([Node("prepare", status="completed")] + [Node(f"fold_{i}", ["prepare"]) for i in range(n)])
    dag.add(Node("aggregate", [f"fold_{i}" for i in range(n)]))
    return dag


def chain(n: int) -> DAG:
    dag = DAG([Node("s0", status="completed", started=0.0, completed=0.5)])
    for i in range(1, n):
        dag.add(Node(f"s{i}", [f"s{i - 1}"], status=NODE_STATUSES[i % len(NODE_STATUSES)]))
    return dag


def random_layered(n: int, seed: int = 1) -> DAG:
    rnd, dag, layers, k = random.Random(seed), DAG(), [], 0
    while k < n:
        layer = [f"n{k + i}" for i in range(min(n - k, rnd.randint(5, 35)))]
        k += len(layer)
        for name in layer:
            parents = rnd.sample(layers[-1], min(len(layers[-1]), rnd.randint(1, 3))) if layers else []
            dag.add(Node(name, parents, status="completed"))
        layers.append(layer)
    return dag


def failed_run() -> DAG:
    return DAG([
        Node("load", status="cached", started=0.0, completed=0.035),
        Node("features", ["load"], status="failed", started=0.0, completed=0.4,
             error="ValueError: bad age\nTraceback ..."),
        Node("train", ["features"], status="skipped", error="parent step 'features' failed"),
    ])


def box_texts(dag: DAG) -> list[str]:
    return [t.get_text() for t in figure(dag).axes[0].texts]


# -- layout ---------------------------------------------------------------------------------


def test_every_step_of_a_layer_shares_one_rank_coordinate_and_layers_go_left_to_right():
    dag = random_layered(120)
    layout = layout_dag(dag)
    xs = []
    for layer in dag.layers():
        if len(layer) > FOLD_ROWS:
            continue
        assert len({layout.pos[name][0] for name in layer}) == 1, layer
        xs.append(layout.pos[layer[0]][0])
    # within one band, each layer is right of the one before (a new band starts again at the left)
    assert sum(b > a for a, b in zip(xs, xs[1:], strict=False)) >= len(xs) // 2


def test_a_30_wide_fan_out_and_in_is_one_column_without_crossings():
    dag = fan(30)
    layout = layout_dag(dag)
    folds = [layout.pos[f"fold_{i}"] for i in range(30)]
    assert len({x for x, _ in folds}) == 1  # one rank, not wrapped into columns
    assert layout.pos["prepare"][0] < folds[0][0] < layout.pos["aggregate"][0]
    assert crossings(layout) == 0
    tops = sorted(y for _, y in folds)
    assert all(b - a >= 0.52 for a, b in zip(tops, tops[1:], strict=False))  # no two boxes overlap


def test_crossing_reduction_beats_the_order_steps_were_added_in():
    dag = DAG([Node(f"a{i}") for i in range(6)])
    for i in range(6):  # b_i hangs off a_(5-i): added in the reverse of the ideal order
        dag.add(Node(f"b{i}", [f"a{5 - i}"]))
    assert crossings(layout_dag(dag)) == 0
    assert crossings(layout_dag(random_layered(300))) < 6000  # insertion order: about 16,000


def test_a_layer_too_wide_for_a_page_folds_onto_one_labelled_panel():
    dag = fan(300)
    layout = layout_dag(dag)
    (panel,) = layout.panels
    assert panel.steps == 300 and panel.columns >= 2
    for i in range(300):
        x, y = layout.pos[f"fold_{i}"]
        assert panel.x <= x and x + BOX_W <= panel.x + panel.w and panel.y <= y <= panel.y + panel.h
    # prepare -> the 300 steps is one bundled edge, as is the 300 steps -> aggregate
    assert len({id(s) for s in layout.edges.values()}) == 2
    assert crossings(layout) == 0
    texts = box_texts(dag)
    assert "layer 2 · 300 steps in 8 columns" in texts and "one layer, folded into columns" in texts
    fig = figure(dag)
    assert max(fig.get_size_inches()) <= 40.01


def test_a_long_chain_wraps_into_bands_within_the_page():
    fig = figure(chain(1000))
    width, height = fig.get_size_inches()
    assert width <= 40.01 and height <= 40.01
    layout = layout_dag(chain(100))
    assert len({round(y, 3) for _, y in layout.pos.values()}) > 3  # several bands
    assert layout.width / layout.height < 4


# -- golden layouts: the exact geometry of representative graphs -----------------------------
# Computed with grandalf 0.8 before layout_dag was split into its stages; a change to the layout
# shows here first (and on purpose only: every stored picture of a finished run would differ).


def golden_chain() -> DAG:
    dag = DAG([Node("s0", status="completed")])
    for i in range(1, 4):
        dag.add(Node(f"s{i}", [f"s{i - 1}"]))
    return dag


def golden_diamond() -> DAG:
    """A failed step's taller box (its error line) on one side of the diamond."""
    return DAG([Node("load"), Node("a", ["load"]), Node("b", ["load"], status="failed", error="E: x"),
                Node("join", ["a", "b"])])


def golden_fan_with_skip() -> DAG:
    """root -> six parallel steps -> mid -> end, and root -> end: a long edge through two layers."""
    dag = DAG([Node("root")] + [Node(f"w{i}", ["root"]) for i in range(6)])
    dag.add(Node("mid", [f"w{i}" for i in range(6)]))
    dag.add(Node("end", ["mid", "root"]))
    return dag


def golden_folded() -> DAG:
    """A folded fan-out and fan-in (bundled edges), a long edge across the panel, an edge out of one box."""
    dag = DAG([Node("prepare")] + [Node(f"f{i}", ["prepare"]) for i in range(90)])
    dag.add(Node("agg", [f"f{i}" for i in range(90)]))
    dag.add(Node("late", ["agg", "prepare", "f3"]))
    return dag


def golden_folded_mixed() -> DAG:
    """A folded layer whose steps have different parents: edges into and out of single boxes."""
    dag = DAG([Node("a"), Node("b")] + [Node(f"m{i}", ["a" if i % 2 else "b"]) for i in range(50)])
    dag.add(Node("z", ["m1", "m7", "a"]))
    dag.add(Node("y", ["z", "m10"]))
    return dag


def golden_wrapped() -> DAG:
    """A chain long enough to wrap into bands, an edge to a later band, and an unconnected step."""
    dag = DAG([Node("s0", status="completed")])
    for i in range(1, 30):
        dag.add(Node(f"s{i}", [f"s{i - 1}"]))
    dag.add(Node("skip", ["s2"]))
    dag.add(Node("tail", ["skip", "s27"]))
    dag.add(Node("other"))
    return dag


def layout_record(layout) -> dict:
    """Everything a layout says, rounded to 1e-6 inch: boxes, ranks, every edge's segments, which
    edges share one drawn line, panels and the drawing's size."""
    r = lambda v: round(v, 6)  # noqa: E731
    point = lambda p: [r(p[0]), r(p[1])]  # noqa: E731
    groups: dict[int, list] = {}
    for edge, segments in layout.edges.items():
        groups.setdefault(id(segments), []).append(list(edge))
    return {
        "pos": {n: point(p) for n, p in layout.pos.items()},
        "height_of": {n: r(h) for n, h in layout.height_of.items()},
        "rank_of": layout.rank_of,
        "edges": {f"{p}->{c}": [[s.kind, point(s.a), point(s.b)] for s in segs] for (p, c), segs in layout.edges.items()},
        "shared": sorted(sorted(map(tuple, g)) for g in groups.values()),
        "panels": [[p.rank, r(p.x), r(p.y), r(p.w), r(p.h), p.steps, p.columns] for p in layout.panels],
        "size": [r(layout.width), r(layout.height)],
    }


@pytest.mark.parametrize(
    ("make", "pos", "size"),
    [
        (golden_chain, {"s0": (0.7, 0.3), "s1": (3.5, 0.3), "s2": (6.3, 0.3), "s3": (9.1, 0.3)}, (11.8, 1.12)),
        (golden_diamond, {"load": (0.7, 0.715), "a": (3.5, 0.3), "b": (3.5, 1.02), "join": (6.3, 0.715)}, (9.0, 2.06)),
        (
            golden_fan_with_skip,
            {"root": (0.7, 2.37), "w0": (3.5, 0.3), "w1": (3.5, 1.02), "w2": (3.5, 1.74), "w3": (3.5, 2.46),
             "w4": (3.5, 3.18), "w5": (3.5, 3.9), "mid": (6.3, 2.1), "end": (9.1, 2.37)},
            (11.8, 5.2),
        ),
    ],
)
def test_layout_of_a_chain_a_diamond_and_a_fan_out_with_a_skip_edge_is_pinned(make, pos, size):
    layout = layout_dag(make())
    assert {n: (round(x, 6), round(y, 6)) for n, (x, y) in layout.pos.items()} == pos
    assert (round(layout.width, 6), round(layout.height, 6)) == size


def test_skip_edge_passes_below_the_fan_out_through_both_layers_it_crosses():
    segments = layout_dag(golden_fan_with_skip()).edges["root", "end"]
    assert [(s.kind, tuple(round(v, 6) for v in s.a + s.b)) for s in segments] == [
        ("curve", (2.7, 2.63, 3.5, 4.7)),
        ("line", (3.5, 4.7, 5.5, 4.7)),
        ("curve", (5.5, 4.7, 6.3, 4.7)),
        ("line", (6.3, 4.7, 8.3, 4.7)),
        ("curve", (8.3, 4.7, 9.1, 2.63)),
    ]


@pytest.mark.parametrize(
    ("make", "digest"),
    [
        (golden_chain, "05db882877f457e6"),
        (golden_diamond, "37af7731823c8a52"),
        (golden_fan_with_skip, "13fb83baa978bc43"),
        (golden_folded, "a4cd1abc0f58e470"),
        (golden_folded_mixed, "79d009be1218f479"),
        (golden_wrapped, "58540731317594cf"),
    ],
)
def test_whole_layout_is_pinned_edges_panels_and_bands_included(make, digest):
    import hashlib
    import json

    record = json.dumps(layout_record(layout_dag(make())), sort_keys=True)
    assert hashlib.sha256(record.encode()).hexdigest()[:16] == digest


# -- what the picture says -------------------------------------------------------------------


def test_legend_has_one_entry_per_status_present_with_its_count():
    dag = DAG([Node("a", status="completed"), Node("b", ["a"], status="cached"), Node("c", ["a"], status="cached"),
               Node("d", ["b"], status="failed", error="boom")])
    texts = box_texts(dag)
    legend = [t for t in texts if re.search(r"\(\d+\)$", t)]
    assert sorted(legend) == ["cached: reused an earlier run (2)", "completed (1)", "failed (1)"]


def test_failed_box_shows_the_first_line_of_its_error():
    texts = box_texts(failed_run())
    assert "ValueError: bad age" in texts
    assert not any("Traceback" in t for t in texts)
    assert "cached · 35 ms" in texts and "failed · 400 ms" in texts
    long = "ValueError: column 'age' has 3 negative values in rows 17, 18 and 40"
    texts = box_texts(DAG([Node("f", status="failed", error=long + "\nmore")]))
    (shown,) = [t for t in texts if t.startswith("ValueError: col")]
    head, _, tail = shown.partition("…")  # shortened in the middle to fit the box
    assert long.startswith(head) and long.endswith(tail) and len(shown) < len(long)


def test_each_status_colour_appears_for_its_step():
    dag = DAG([Node(status, status=status) for status in NODE_STATUSES])
    image = pixels(plot_dag(dag))
    for status in NODE_STATUSES:
        assert colour_count(image, STATUS_COLORS[status]) > 500, status


def test_single_step_draws_a_small_picture(tmp_path):
    target = tmp_path / "dag.png"
    data = plot_dag(DAG([Node("train", status="completed", started=0.0, completed=1.2)]), target)
    assert data.startswith(PNG_MAGIC) and target.read_bytes() == data
    height, width, _ = pixels(data).shape
    assert 150 < width < 900 and 80 < height < 400


def test_empty_pipeline_says_so():
    assert box_texts(DAG()) == ["empty pipeline"]


def test_text_never_overflows_its_box():
    long = "preprocess_the_whole_dataset_with_a_very_long_step_name_" * 3
    dag = DAG([
        Node(long + "1", status="failed", started=0.0, completed=4000.0, error="E: " + "x" * 300),
        Node(long + "2", [long + "1"], status="cached", started=0.0, completed=0.2),
        Node("tabs\tand\nnewlines $x^", [long + "2"]),
    ])
    fig = figure(dag, title="a title " * 30)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [c for c in ax.collections if c.get_zorder() == 2][0]
    rects = [p.get_extents(ax.transData) for p in boxes.get_paths()]
    inside = 0
    for text in ax.texts:
        extent = text.get_window_extent(renderer)
        assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width, text.get_text()
        middle = ((extent.x0 + extent.x1) / 2, (extent.y0 + extent.y1) / 2)
        home = [r for r in rects if r.contains(*middle)]
        if home:
            inside += 1
            assert home[0].x0 <= extent.x0 and extent.x1 <= home[0].x1, text.get_text()
            assert home[0].y0 <= extent.y0 and extent.y1 <= home[0].y1, text.get_text()
    assert inside == 6  # three names, two detail lines, one error line
    names = [t.get_text() for t in ax.texts]
    assert any(n.startswith("preprocess") and "…" in n and n.endswith("_1") for n in names)
    assert "tabs and newlines $x^" in names


def test_high_dpi_is_lowered_to_keep_the_image_small():
    fig = figure(fan(100), dpi=600)
    width, height = fig.get_size_inches() * fig.dpi
    assert width * height <= MAX_PIXELS * 1.01


def test_svg_is_a_picture_whose_text_stays_text():
    svg = render_dag(failed_run(), "svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "features" in svg and "ValueError: bad age" in svg


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (0.035, "35 ms"), (0.9994, "999 ms"), (1.234, "1.2 s"), (42.4, "42 s"), (185, "3 min 05 s"),
     (7620, "2 h 07 min")],
)
def test_durations_are_short_and_human(seconds, text):
    assert format_duration(seconds) == text


# -- text formats ----------------------------------------------------------------------------


def awkward() -> DAG:
    """Names a text format must quote: spaces, quotes, brackets, a backslash, markup."""
    names = ['load "raw"', "clean [v2]", "a\\b", "x<y>&z", "plain"]
    dag = DAG([Node(names[0], status="completed")])
    dag.add(Node(names[1], [names[0]], status="failed", error='KeyError: "col"\nmore'))
    dag.add(Node(names[2], [names[0]], status="cached"))
    dag.add(Node(names[3], [names[1], names[2]], status="skipped"))
    dag.add(Node(names[4], [names[3]]))
    return dag


def test_dot_text_parses_with_every_node_and_edge():
    import pydot

    dag = awkward()
    (graph,) = pydot.graph_from_dot_data(to_dot(dag, title="demo"))
    unquote = lambda s: s[1:-1].replace('\\"', '"').replace("\\\\", "\\")  # noqa: E731
    nodes = {unquote(n.get_name()): n for n in graph.get_nodes() if n.get_name() not in ("node", "edge", "graph")}
    assert set(nodes) == set(dag.names())
    edges = {(unquote(e.get_source()), unquote(e.get_destination())) for e in graph.get_edges()}
    assert edges == {(p, n.name) for n in dag for p in n.parents}
    assert nodes["clean [v2]"].get("fillcolor") == f'"{STATUS_COLORS["failed"]}"'
    assert 'KeyError: \\"col\\"' in nodes["clean [v2]"].get("label")


def test_mermaid_text_is_a_flowchart_with_every_node_and_edge():
    dag = awkward()
    text = to_mermaid(dag)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    labels, edges, classes = {}, set(), set()
    for line in lines[1:]:
        if m := re.fullmatch(r'  (s\d+)\["([^"]*)"\]:::(\w+)', line):
            labels[m[1]] = (m[2], m[3])
        elif m := re.fullmatch(r"  (s\d+) --> (s\d+)", line):
            edges.add((m[1], m[2]))
        elif m := re.fullmatch(r"  classDef (\w+) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6}.*", line):
            classes.add(m[1])
        else:
            pytest.fail(f"not a mermaid line we write: {line!r}")
    name_of = {i: label.split("<br/>")[0] for i, (label, _) in labels.items()}
    unescape = {"#quot;": '"', "#lt;": "<", "#gt;": ">", "#amp;": "&"}
    for code, char in unescape.items():
        name_of = {i: n.replace(code, char) for i, n in name_of.items()}
    assert sorted(name_of.values()) == sorted(dag.names())
    ids = {n: i for i, n in name_of.items()}
    assert edges == {(ids[p], ids[n.name]) for n in dag for p in n.parents}
    assert classes == {node.status for node in dag} == {status for _, status in labels.values()}
    assert "KeyError: #quot;col#quot;" in labels[ids["clean [v2]"]][0]


def test_format_comes_from_the_flag_or_the_suffix_and_unknown_ones_are_refused():
    from labpipe.errors import PipelineError

    assert format_for("x.svg") == "svg" and format_for("x.gv") == "dot" and format_for("x.mmd") == "mermaid"
    assert format_for("x") == "png" and format_for("x.png", "DOT") == "dot"
    with pytest.raises(PipelineError, match="known formats: png, svg, dot, mermaid"):
        format_for("x.png", "jpeg")
    with pytest.raises(PipelineError, match=r"known suffixes are \.png, \.svg"):
        format_for("x.jpg")


def test_drawing_modules_import_no_matplotlib_or_grandalf():
    code = ("import sys, labpipe.pipeline.dag_plot, labpipe.pipeline.dag_text, labpipe.pipeline.dag_formats\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'grandalf', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- labpipe plot ----------------------------------------------------------------------------


@PipelineDecorator.component(return_values=["y"])
def plot_load(x):
    return x + 1


@PipelineDecorator.component(return_values=["z"])
def plot_check(y):
    raise ValueError(f"y is {y}, want an even number\nsecond line")


@PipelineDecorator.pipeline(name="plotpipe", project="plot", version="1.0")
def plotpipe(x: int = 2):
    return plot_check(plot_load(x)) + 0


@pytest.fixture
def failed_pipeline(local_mode):
    """A finished local run (real workers) whose second step raised a two-line error."""
    from labpipe import Task
    from labpipe.errors import StepFailed

    with pytest.raises(StepFailed):
        plotpipe(x=2)
    (run_task,) = Task.get_tasks(task_filter={"type": ["controller"]})
    return run_task


def plot(*args, ok=True):
    from labpipe.cli import main

    result = CliRunner().invoke(main, ["plot", *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_plot_writes_each_format_named_by_flag_or_suffix(failed_pipeline, tmp_path):
    plot(failed_pipeline.id, "-o", str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes().startswith(PNG_MAGIC)
    plot(failed_pipeline.id, "-o", str(tmp_path / "a.svg"))
    assert b"<svg" in (tmp_path / "a.svg").read_bytes()
    plot(failed_pipeline.id, "-o", str(tmp_path / "a.gv"))
    assert (tmp_path / "a.gv").read_text().startswith("digraph pipeline {")
    result = plot(failed_pipeline.id, "--format", "mermaid", "-o", str(tmp_path))
    assert "flowchart LR" in (tmp_path / "dag.mmd").read_text().splitlines() and "(mermaid," in result.output


def test_plot_shows_the_failed_steps_error_from_its_task(failed_pipeline, tmp_path):
    plot(failed_pipeline.id, "-o", str(tmp_path / "dag.dot"))
    text = (tmp_path / "dag.dot").read_text()
    assert '"plot_load" -> "plot_check"' in text
    assert "ValueError: y is 3, want an even number" in text and "second line" not in text


def test_plot_refuses_an_unknown_format_listing_the_known_ones(failed_pipeline, tmp_path):
    result = plot(failed_pipeline.id, "--format", "jpeg", "-o", str(tmp_path / "x.jpeg"), ok=False)
    assert result.exit_code == 1 and "known formats: png, svg, dot, mermaid" in result.output
    assert not (tmp_path / "x.jpeg").exists()


def test_a_stopped_step_is_worded_in_the_picture_as_the_cli_words_it(store, tmp_path):
    """A step whose node status is 'aborted' (its task stopped) reads 'stopped' in `labpipe show`;
    its box, the legend, the dot and mermaid labels say the same word."""
    import json

    from labpipe import Task
    from labpipe.cli import main
    from labpipe.pipeline.render import load_dag
    from labpipe.store import pipelines
    from labpipe.store.db import get_database

    run = Task.create(project_name="plot", task_name="stopped run", task_type="controller")
    pipelines.save_nodes(get_database(), run.id, [
        {"name": "load", "seq": 0, "parents": [], "status": "completed", "started": 0.0, "completed": 1.5},
        {"name": "train", "seq": 1, "parents": ["load"], "status": "aborted", "started": 1.5, "completed": 4.0,
         "error": "pipeline stopped: by labpipe stop"},
        {"name": "report", "seq": 2, "parents": ["train"], "status": "skipped", "error": "pipeline stopped"},
    ])
    shown = CliRunner().invoke(main, ["show", run.id, "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    cli_word = {s["name"]: s["status"] for s in json.loads(shown.output)["steps"]}["train"]
    assert cli_word == "stopped"

    dag = load_dag(run.id)
    assert dag["train"].status == "aborted"  # the Python API keeps ClearML's node status
    texts = box_texts(dag)
    assert f"{cli_word} · 2.5 s" in texts  # the box's detail line
    (legend,) = [t for t in texts if t.endswith(" (1)") and "stopped" in t]
    assert legend.startswith(f"{cli_word}: ")
    assert not any("aborted" in t for t in texts)
    plot(run.id, "-o", str(tmp_path / "dag.dot"))
    dot = (tmp_path / "dag.dot").read_text()
    (train_line,) = [line for line in dot.splitlines() if line.startswith('  "train" [')]
    assert f"{cli_word} · 2.5 s" in train_line and f'tooltip="{cli_word}"' in train_line
    mermaid = to_mermaid(dag)
    assert f"train<br/>{cli_word} · 2.5 s<br/>pipeline stopped: by labpipe stop" in mermaid
    png = tmp_path / "dag.png"
    plot(run.id, "-o", str(png))
    assert png.read_bytes().startswith(PNG_MAGIC)
