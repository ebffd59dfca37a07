"""Logger: scalars, single values, text, figures and tables, read back."""

from __future__ import annotations

import pandas as pd
import pytest

from labpipe import Logger, Task


def test_scalars_and_last_metrics_read_back():
    t = Task.create(task_name="metrics")
    log = t.get_logger()
    for i, v in enumerate([0.9, 0.5, 0.7]):
        log.report_scalar("loss", "train", v, iteration=i)
    log.report_scalar("acc", "val", 0.8, iteration=0)
    log.report_single_value("auc", 0.93)
    assert t.get_reported_scalars()["loss"]["train"] == {"x": [0, 1, 2], "y": [0.9, 0.5, 0.7]}
    last = t.get_last_scalar_metrics()
    assert last["loss"]["train"] == {"last": 0.7, "min": 0.5, "max": 0.9}
    assert last["Summary"]["auc"]["last"] == 0.93
    assert t.get_reported_single_values() == {"auc": 0.93}


def test_non_numeric_scalar_is_rejected_with_its_name():
    log = Task.create(task_name="m").get_logger()
    with pytest.raises(ValueError, match="loss/train.*'abc'"):
        log.report_scalar("loss", "train", "abc", 0)


def test_text_figure_and_table_are_stored():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    t = Task.create(task_name="plots")
    log = t.get_logger()
    log.report_text("a line of text", print_console=False)
    fig = Figure()
    fig.add_subplot().plot([1, 2, 3])
    log.report_matplotlib_figure("curve", "s", fig, iteration=1)
    log.report_table("tbl", "s", 0, table_plot=pd.DataFrame({"a": [1, 2]}))
    assert "a line of text" in t.get_console()
    plots = log.get_plots()
    assert plots[0]["kind"] == "image" and plots[0]["data"][:8] == b"\x89PNG\r\n\x1a\n"
    assert plots[1]["kind"] == "table" and "a" in plots[1]["data"].splitlines()[0]


def test_current_logger_needs_a_task():
    with pytest.raises(RuntimeError, match="Task.init"):
        Logger.current_logger()
    t = Task.init(task_name="cur", capture_output=False)
    try:
        Logger.current_logger().report_scalar("x", "y", 1, 0)
        assert t.get_last_scalar_metrics()["x"]["y"]["last"] == 1
    finally:
        t.close()


def test_report_text_is_recorded_once_when_stdout_is_already_captured():
    t = Task.init(task_name="captured")  # stdout is teed into this task's console
    try:
        t.get_logger().report_text("only once please")
    finally:
        t.close()
    assert t.get_console().count("only once please") == 1


# -- charts: stored as data, read back as ClearML reported them ----------------------------------------


def _charts(task):
    return [p for p in task.get_logger().get_plots() if p["kind"] == "chart"]


def test_histogram_rows_are_series_named_by_labels():
    import numpy as np

    t = Task.create(task_name="hist")
    t.get_logger().report_histogram("dist", "counts", np.array([[1, 2, 3], [4, 5, 6]]), iteration=2,
                                    labels=["A", "B"], xlabels=["x", "y", "z"], xaxis="bin", yaxis="n", mode="stack")
    (plot,) = _charts(t)
    chart = plot["data"]
    assert (plot["title"], plot["series"], plot["iteration"]) == ("dist", "counts", 2)
    assert chart["type"] == "histogram" and chart["layout"] == {"xaxis": "bin", "yaxis": "n", "mode": "stack"}
    assert chart["traces"] == [{"name": "A", "x": ["x", "y", "z"], "y": [1.0, 2.0, 3.0]},
                               {"name": "B", "x": ["x", "y", "z"], "y": [4.0, 5.0, 6.0]}]


def test_histogram_of_two_rows_of_equal_length_is_still_two_series():
    t = Task.create(task_name="two rows")
    t.get_logger().report_histogram("h", "s", ([1, 2], [3, 4]), labels=["a", "b"])
    (chart,) = [p["data"] for p in _charts(t)]
    assert [tr["y"] for tr in chart["traces"]] == [[1.0, 2.0], [3.0, 4.0]]


def test_vector_is_a_one_series_histogram_named_by_its_series():
    t = Task.create(task_name="vec")
    t.get_logger().report_vector("v", "weights", [0.5, 1.5])
    (chart,) = [p["data"] for p in _charts(t)]
    assert chart["traces"] == [{"name": "weights", "x": [0, 1], "y": [0.5, 1.5]}]


def test_line_plot_scatter_and_3d_keep_their_points():
    import numpy as np

    t = Task.create(task_name="lines")
    log = t.get_logger()
    log.report_line_plot("roc", [Logger.SeriesInfo("model", np.array([[0, 0], [0.5, 0.8], [1, 1]]), labels=["a", "b", "c"])],
                         xaxis="fpr", yaxis="tpr", mode="lines+markers")
    log.report_scatter2d("pts", "s", [[1, 2], [3, 4]], iteration=1, xaxis="x", labels=["p", "q"], mode="markers")
    log.report_scatter3d("cloud", "s", np.arange(6).reshape(2, 3), zaxis="depth")
    line, scatter, cloud = (p["data"] for p in _charts(t))
    assert line["type"] == "line" and line["traces"][0] == {
        "name": "model", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.8, 1.0], "mode": "lines+markers", "labels": ["a", "b", "c"]}
    assert scatter["traces"][0]["labels"] == ["p", "q"] and scatter["traces"][0]["y"] == [2.0, 4.0]
    assert cloud["traces"][0]["z"] == [2.0, 5.0] and cloud["layout"]["zaxis"] == "depth"


def test_confusion_matrix_and_surface_keep_rows_and_labels():
    t = Task.create(task_name="cm")
    log = t.get_logger()
    log.report_confusion_matrix("cm", "val", [[5, 1], [2, 7]], xlabels=["cat", "dog"], ylabels=["cat", "dog"], yaxis_reversed=True)
    log.report_surface("surf", "s", [[0, 1, 2], [1, 2, 3]], camera=(1, 1, 1))
    cm, surf = (p["data"] for p in _charts(t))
    assert cm["type"] == "confusion_matrix" and cm["traces"][0]["z"] == [[5.0, 1.0], [2.0, 7.0]]
    assert cm["traces"][0]["x"] == ["cat", "dog"] and cm["layout"]["yaxis_reversed"] is True
    assert surf["type"] == "surface" and surf["traces"][0]["y"] == [0, 1] and surf["layout"]["camera"] == [1, 1, 1]


def test_nan_and_infinity_are_stored_as_strict_json_or_the_chosen_values():
    t = Task.create(task_name="nan")
    log = t.get_logger()
    log.report_histogram("h", "s", [float("nan"), float("inf"), 1])
    assert _charts(t)[0]["data"]["traces"][0]["y"] == [None, None, 1.0]
    try:
        Logger.set_reporting_nan_value(-1)
        Logger.set_reporting_inf_value(1e9)
        log.report_histogram("h2", "s", [float("nan"), float("-inf")])
        log.report_scalar("loss", "train", float("nan"), 0)
    finally:
        from labpipe import charts

        charts.special_values.update(nan=None, inf=None)
    assert _charts(t)[1]["data"]["traces"][0]["y"] == [-1.0, -1e9]
    assert t.get_reported_scalars()["loss"]["train"]["y"] == [-1.0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda log: log.report_histogram("h", "s", ["a", 1]), r"histogram h/s: 'a' is not a number"),
        (lambda log: log.report_histogram("h", "s", [[1, 2], [3]]), r"histogram h/s: rows have different lengths"),
        (lambda log: log.report_histogram("h", "s", [1, 2], labels=["a", "b", "c"]), r"3 labels given for 1 values"),
        (lambda log: log.report_histogram("h", "s", [1, 2], mode="pile"), r"mode='pile' is not one of group, stack, relative"),
        (lambda log: log.report_scatter2d("p", "s", [[1, 2, 3]]), r"scatter2d p/s: expected 2 columns per point, got 3"),
        (lambda log: log.report_scatter3d("p", "s", [[1, 2]]), r"scatter3d p/s: expected 3 columns per point"),
        (lambda log: log.report_confusion_matrix("cm", "s", [[1, 2]], xlabels=["a"]), r"1 xlabels given for 2 values"),
        (lambda log: log.report_line_plot("l", [[0, 1]], "x", "y"), r"each series must be a Logger.SeriesInfo"),
        (lambda log: log.report_plotly("p", "s", 42), r"expected a plotly Figure or a dict with 'data'"),
        (lambda log: log.report_media("m", "s"), r"pass exactly one of local_path=, stream= or url="),
        (lambda log: log.report_media("m", "s", stream=__import__("io").BytesIO(b"x")), r"a stream needs file_extension="),
        (lambda log: log.report_image("i", "s"), r"pass exactly one of local_path=, image= or url="),
    ],
)
def test_bad_chart_input_is_refused_naming_the_chart_and_nothing_is_stored(call, message):
    t = Task.create(task_name="bad")
    with pytest.raises(ValueError, match=message):
        call(t.get_logger())
    assert t.get_logger().get_plots() == []


def test_media_keeps_its_bytes_and_extension_and_delete_after_upload_removes_the_file(tmp_path):
    import io

    t = Task.create(task_name="media")
    log = t.get_logger()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    log.report_media("video", "epoch", iteration=3, local_path=str(clip), delete_after_upload=True)
    log.report_media("page", "html", stream=io.StringIO("<b>hi</b>"), file_extension="html")
    video, page = log.get_plots()
    assert (video["kind"], video["file_extension"], video["iteration"], video["data"]) == ("media", ".mp4", 3, b"\x00\x00\x00\x18ftypmp42")
    assert (page["file_extension"], page["data"]) == (".html", b"<b>hi</b>")
    assert not clip.exists()


def test_plotly_figure_dict_is_kept_and_image_from_array_is_a_png():
    import numpy as np

    t = Task.create(task_name="plotly")
    log = t.get_logger()
    log.report_plotly("fig", "s", {"data": [{"type": "bar", "y": [1, 2]}], "layout": {"title": "t"}})
    log.report_image("img", "s", image=np.zeros((4, 4, 3), dtype=np.uint8))
    fig, img = log.get_plots()
    assert fig["data"]["traces"] == [{"type": "bar", "y": [1, 2]}] and fig["data"]["layout"] == {"extra": {"title": "t"}}
    assert img["kind"] == "image" and img["data"][:4] == b"\x89PNG"


def test_charts_reported_inside_a_worker_step_land_on_the_step(stop_shared_pool):
    from labpipe.agent.pool import Pool

    def step():
        from labpipe import Task

        Task.current_task().get_logger().report_confusion_matrix("cm", "val", [[1, 0], [0, 1]])
        return 1

    task = Task.create_function_task(step, func_name="step", task_name="charts-in-step")
    with Pool(queues={"default": 1}):
        Task.enqueue(task, queue_name="default")
        task.wait_for_status(timeout=60)
    assert task.reload().status == "completed"
    (chart,) = [p["data"] for p in _charts(task)]
    assert chart["type"] == "confusion_matrix" and chart["traces"][0]["z"] == [[1.0, 0.0], [0.0, 1.0]]


def test_capture_logging_sends_log_records_to_the_console():
    import logging

    t = Task.create(task_name="logs")
    with t.get_logger().capture_logging():
        logging.getLogger("mine").warning("disk almost full")
    logging.getLogger("mine").warning("not captured")
    assert "disk almost full" in t.get_console() and "not captured" not in t.get_console()


def test_histogram_takes_numpys_histogram_counts_and_bin_edges():
    import numpy as np

    ages = np.array([22, 25, 31, 38, 38, 45, 61, 70])
    t = Task.create(task_name="ages")
    t.get_logger().report_histogram("age", "passengers", values=np.histogram(ages, bins=4), iteration=0, xaxis="age")
    (chart,) = [p["data"] for p in _charts(t)]
    counts, edges = np.histogram(ages, bins=4)
    (trace,) = chart["traces"]
    assert trace["y"] == [float(c) for c in counts] and sum(trace["y"]) == len(ages)
    assert trace["bin_edges"] == [float(e) for e in edges]
    assert trace["x"] == ["[22, 34)", "[34, 46)", "[46, 58)", "[58, 70]"]
    assert trace["name"] == "passengers" and chart["layout"]["xaxis"] == "age"


def test_histogram_of_counts_and_edges_keeps_given_xlabels_and_plain_pairs():
    t = Task.create(task_name="pairs")
    log = t.get_logger()
    log.report_histogram("h", "s", ([3, 1], [0.0, 0.5, 1.0]), xlabels=["low", "high"])
    log.report_histogram("rows", "s", [[1, 2], [3, 4]])  # two rows of bars, not counts and edges
    binned, rows = [p["data"] for p in _charts(t)]
    assert binned["traces"][0]["x"] == ["low", "high"] and binned["traces"][0]["bin_edges"] == [0.0, 0.5, 1.0]
    assert [tr["y"] for tr in rows["traces"]] == [[1.0, 2.0], [3.0, 4.0]] and "bin_edges" not in rows["traces"][0]
    with pytest.raises(ValueError, match=r"histogram h2/s: rows have different lengths"):
        log.report_histogram("h2", "s", ([1, 2, 3], [0, 1]))  # edges one shorter: not np.histogram's shape
