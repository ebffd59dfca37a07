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
