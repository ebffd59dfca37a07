"""Drawing a pipeline DAG to PNG: valid images, readable at 1 and 100+ steps, status colours."""

from __future__ import annotations

import io

import pytest

from labpipe.pipeline.dag import DAG, NODE_STATUSES, Node
from labpipe.pipeline.dag_plot import MAX_PIXELS, STATUS_COLORS, _figure, format_duration, plot_dag

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


def distinct_colours(image) -> int:
    import numpy as np

    return len(np.unique(image.reshape(-1, 3), axis=0))


def fan_out(n: int) -> DAG:
    return DAG([Node("root", status="completed")] + [Node(f"leaf_{i}", ["root"]) for i in range(n)])


def chain(n: int) -> DAG:
    dag = DAG([Node("s0", status="completed", started=0.0, completed=0.5)])
    for i in range(1, n):
        dag.add(Node(f"s{i}", [f"s{i - 1}"], status=NODE_STATUSES[i % len(NODE_STATUSES)]))
    return dag


def test_plot_returns_png_bytes_and_writes_the_same_to_path(tmp_path):
    target = tmp_path / "dag.png"
    data = plot_dag(DAG([Node("a", status="completed"), Node("b", ["a"])]), target, title="demo")
    assert data.startswith(PNG_MAGIC)
    assert target.read_bytes() == data
    image = pixels(data)
    height, width, _ = image.shape
    assert 100 < width < 2000 and 100 < height < 2000
    assert distinct_colours(image) > 1


def test_single_step_draws_a_small_picture():
    image = pixels(plot_dag(DAG([Node("train", status="completed", started=0.0, completed=1.2)])))
    height, width, _ = image.shape
    assert 150 < width < 600 and 80 < height < 400
    assert colour_count(image, STATUS_COLORS["completed"]) > 500


def test_empty_pipeline_draws_a_small_picture_that_says_so():
    fig = _figure(DAG(), title=None, dpi=100)
    assert [t.get_text() for t in fig.axes[0].texts] == ["empty pipeline"]
    image = pixels(plot_dag(DAG()))
    assert image.shape[0] < 200 and image.shape[1] < 400
    assert distinct_colours(image) > 1


def test_each_status_colour_appears_for_its_step():
    dag = DAG([Node(status, status=status) for status in NODE_STATUSES])
    image = pixels(plot_dag(dag))
    for status in NODE_STATUSES:
        assert colour_count(image, STATUS_COLORS[status]) > 500, status


def test_failed_red_appears_only_when_a_step_failed():
    ok = DAG([Node("a", status="completed"), Node("b", ["a"], status="running")])
    assert colour_count(pixels(plot_dag(ok)), STATUS_COLORS["failed"]) == 0
    ok.set_status("b", "failed")
    assert colour_count(pixels(plot_dag(ok)), STATUS_COLORS["failed"]) > 500


def test_cached_step_says_cached_and_durations_are_shown():
    dag = DAG(
        [
            Node("load", status="cached", started=0.0, completed=0.035),
            Node("fit", ["load"], status="completed", started=0.0, completed=1.234),
        ]
    )
    texts = [t.get_text() for t in _figure(dag, title=None, dpi=100).axes[0].texts]
    assert "cached · 35 ms" in texts
    assert "1.2 s" in texts
    assert "load" in texts and "fit" in texts


def test_fan_out_of_100_wraps_into_columns_and_stays_sane():
    png = plot_dag(fan_out(100))
    assert len(png) < 5_000_000
    image = pixels(png)
    height, width, _ = image.shape
    # One column of 100 boxes would be ~7000 px tall; wrapped it is roughly square.
    assert height < 2500 and width < 2500
    assert 0.5 < width / height < 2


def test_chain_of_100_wraps_into_bands_and_stays_sane():
    image = pixels(plot_dag(chain(100)))
    height, width, _ = image.shape
    assert width <= 4000 and height <= 4000
    assert width / height < 4
    assert colour_count(image, STATUS_COLORS["failed"]) > 500


def test_text_never_overflows_its_box():
    long = "preprocess_the_whole_dataset_with_a_very_long_step_name_" * 3
    dag = DAG(
        [
            Node(long + "1", status="failed", started=0.0, completed=4000.0),
            Node(long + "2", [long + "1"], status="cached", started=0.0, completed=0.2),
            Node("x", [long + "2"]),
            Node("tabs\tand\nnewlines $x^", ["x"]),
        ]
    )
    fig = _figure(dag, title="a title " * 30, dpi=100)
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
    assert inside == 6  # four names, two detail lines (failed and cached steps)
    names = [t.get_text() for t in ax.texts]
    assert any(n.startswith("preprocess") and "…" in n and n.endswith("_1") for n in names)
    assert "tabs and newlines $x^" in names


def test_huge_graph_is_capped_in_inches():
    fig = _figure(chain(1000), title=None, dpi=100)
    width, height = fig.get_size_inches()
    assert width <= 40.01 and height <= 40.01


def test_high_dpi_is_lowered_to_keep_the_image_small():
    fig = _figure(fan_out(100), title=None, dpi=600)
    width, height = fig.get_size_inches() * fig.dpi
    assert width * height <= MAX_PIXELS * 1.01


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (0.035, "35 ms"),
        (0.9994, "999 ms"),
        (1.234, "1.2 s"),
        (42.4, "42 s"),
        (185, "3 min 05 s"),
        (7620, "2 h 07 min"),
    ],
)
def test_durations_are_short_and_human(seconds, text):
    assert format_duration(seconds) == text
