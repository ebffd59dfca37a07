"""`labpipe scalars`, `labpipe plots`, `labpipe compare`: reported results read and drawn without Python."""

from __future__ import annotations

import json
import os

import pytest
from cli_runner import run

from labpipe import Logger, Task
from labpipe.results_commands import file_stem

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def trained():
    t = Task.create(project_name="res", task_name="train")
    t.set_parameters({"Args/lr": 0.1, "Args/epochs": 3})
    log = t.get_logger()
    for i in range(5):
        log.report_scalar("loss", "train", 1 / (i + 1), i)
        log.report_scalar("loss", "val", 1.5 / (i + 1), i)
    return t


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_scalars_summarises_dumps_json_and_draws_png(trained, tmp_path):
    text = run("scalars", trained.id[:6]).output
    assert "loss/train" in text and "loss/val" in text and "0.2" in text
    curves = json.loads(run("scalars", trained.id, "--json", "-m", "loss/val").output)
    assert curves == {"loss": {"val": {"x": [0, 1, 2, 3, 4], "y": [1.5, 0.75, 0.5, 0.375, 0.3]}}}
    run("scalars", trained.id, "-o", str(tmp_path))
    width, height = _png_size((tmp_path / "scalars.png").read_bytes())
    assert width > 200 and height > 100


def test_scalars_of_a_task_without_any_and_of_an_unknown_metric_say_so(trained):
    empty = Task.create(task_name="quiet")
    result = run("scalars", empty.id, ok=False)
    assert result.exit_code == 1 and "has reported no scalars" in result.output
    result = run("scalars", trained.id, "-m", "acc", ok=False)
    assert "has no scalar 'acc'; it has: loss/train, loss/val" in result.output


def test_scalars_refuses_a_non_png_output_name(trained, tmp_path):
    result = run("scalars", trained.id, "-o", str(tmp_path / "curves.txt"), ok=False)
    assert "drawn as PNG" in result.output and not (tmp_path / "curves.txt").exists()


def test_plots_writes_each_report_as_a_file(tmp_path):
    import numpy as np

    t = Task.create(task_name="plots")
    log = t.get_logger()
    log.report_confusion_matrix("cm", "val", [[3, 1], [0, 4]])
    log.report_line_plot("roc", [Logger.SeriesInfo("m", [[0, 0], [1, 1]])], "fpr", "tpr")
    log.report_plotly("fig", "s", {"data": [{"type": "bar", "y": [1]}]})
    log.report_table("tbl", "s", table_plot=[["a", "b"], [1, 2]])
    log.report_image("img", "s", image=np.zeros((2, 2, 3), dtype=np.uint8))
    log.report_media("clip", "s", local_path=__file__)
    out = tmp_path / "out"
    written = json.loads(run("plots", t.id, "-o", str(out), "--json").output)
    names = sorted(os.listdir(out))
    assert names == ["clip-s-0.py", "cm-val-0.json", "cm-val-0.png", "fig-s-0.json", "img-s-0.png",
                     "roc-0.json", "roc-0.png", "tbl-s-0.csv"]
    assert len(written) == len(names)
    assert json.loads((out / "cm-val-0.json").read_text())["traces"][0]["z"] == [[3.0, 1.0], [0.0, 4.0]]
    assert _png_size((out / "cm-val-0.png").read_bytes())[0] > 100
    assert (out / "tbl-s-0.csv").read_text().splitlines() == ["a,b", "1,2"]


def test_plots_never_writes_through_a_symlink_or_outside_its_folder(tmp_path):
    t = Task.create(task_name="hostile")
    t.get_logger().report_table("../../etc", "/passwd", table_plot=[["x"]])
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (out / "etc-passwd-0.csv").symlink_to(victim)
    result = run("plots", t.id, "-o", str(out), ok=False)
    assert "is a symbolic link" in result.output and victim.read_text() == "keep me"
    os.unlink(out / "etc-passwd-0.csv")
    run("plots", t.id, "-o", str(out))
    assert os.listdir(out) == ["etc-passwd-0.csv"] and sorted(os.listdir(tmp_path)) == ["out", "store", "victim"]


def test_plots_of_a_task_without_any_says_so(tmp_path):
    result = run("plots", Task.create(task_name="none").id, "-o", str(tmp_path), ok=False)
    assert result.exit_code == 1 and "has reported no plots" in result.output


def test_compare_marks_differences_and_shows_the_union_of_parameters(trained, tmp_path):
    other = Task.create(project_name="elsewhere", task_name="other pipeline")
    other.set_parameters({"Args/lr": 0.01, "Args/epochs": 3, "General/seed": 7})
    other.get_logger().report_scalar("loss", "val", 0.1, 0)
    text = run("compare", trained.id[:6], other.id[:6]).output
    lines = {line.split()[2]: line for line in text.splitlines()[1:]}
    assert set(lines) == {"Args/lr", "General/seed", "loss/train", "loss/val"}  # epochs is the same: left out
    assert lines["Args/lr"].startswith("*") and "0.1" in lines["Args/lr"] and "0.01" in lines["Args/lr"]
    assert "Args/epochs" in run("compare", trained.id, other.id, "--all").output
    payload = json.loads(run("compare", trained.id, other.id, "--json").output)
    assert payload["parameters"]["General/seed"] == {"values": [None, 7], "differs": True}
    assert payload["parameters"]["Args/epochs"] == {"values": [3, 3], "differs": False}
    run("compare", trained.id, other.id, "-o", str(tmp_path / "both.png"))
    assert _png_size((tmp_path / "both.png").read_bytes())[0] > 200


def test_compare_needs_two_runs(trained):
    assert "two or more task ids" in run("compare", trained.id, ok=False).output


@pytest.mark.parametrize(("parts", "stem"), [
    (("loss", "train", 3), "loss-train-3"),
    (("../../etc", "/passwd", 0), "etc-passwd-0"),
    (("a\x00b", "c d", 1), "a_b-c_d-1"),
    ((".hidden", "", 2), "hidden-2"),
])
def test_file_stems_are_safe_file_names(parts, stem):
    assert file_stem(*parts) == stem
    assert len(file_stem("x" * 5000)) == 120


def test_a_plotly_chart_is_not_drawn_but_kept():
    from labpipe.figures import draw_chart

    with pytest.raises(ValueError, match="a plotly chart cannot be drawn with matplotlib"):
        draw_chart({"type": "plotly", "title": "t", "series": "s", "traces": [], "layout": {}})
