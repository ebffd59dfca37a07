"""ClearML's `Logger`: scalars, single values, text, charts, images, media and tables reported on a task.

Every report is stored as data on the task (scalars as rows, charts as JSON documents: see
`labpipe.charts`, images, media and tables as blobs), so anything can draw it later.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import TYPE_CHECKING, Any

from . import charts
from .charts import SeriesInfo
from .offline import install_on
from .store import blobs, outputs

if TYPE_CHECKING:
    from .task import Task

SUMMARY = "Summary"
#: the plot kinds stored besides charts (whose kind is "chart"); media is "media:<file extension>"
IMAGE, TABLE, CHART, MEDIA = "image", "table", "chart", "media"


class Logger:
    """Reports metrics on a task. Get one with `task.get_logger()` or `Logger.current_logger()`."""

    SeriesInfo = SeriesInfo
    _upload_destination: str | None = None
    _flush_period = 0.0
    _sample_history: int | None = None

    def __init__(self, task: Task):
        self._task = task

    @classmethod
    def current_logger(cls) -> Logger:
        """The Logger of `Task.current_task()` (inside a component: its step task)."""
        from .task import Task

        task = Task.current_task()
        if task is None:
            raise RuntimeError("Logger.current_logger() needs a running task: call Task.init() first, or use it inside a component")
        return cls(task)

    def report_scalar(self, title: str, series: str, value: float, iteration: int = 0) -> None:
        """One point of the (title, series) curve at `iteration`."""
        outputs.add_scalars(self._task.db, self._task.id, [(str(title), str(series), int(iteration or 0), _number(value, title, series))])

    # -- charts (stored as data: see labpipe.charts) ------------------------------------------

    def report_histogram(self, title: str, series: str, values: Any, iteration: int | None = None, labels: Any = None,
                         xlabels: Any = None, xaxis: str | None = None, yaxis: str | None = None, mode: str | None = None,
                         data_args: dict | None = None, extra_layout: dict | None = None) -> None:
        """Bars already counted: `values` is one series of bars, or one row per series (named by `labels`),
        or numpy's `np.histogram(...)` result `(counts, bin_edges)`: the counts are the bars, and each
        bar is labelled with its bin's range (the edges are kept with the chart as `bin_edges`).

        xlabels: one label per bar; mode: 'group' (default), 'stack' or 'relative'.
        """
        binned = counts_and_edges(values)
        if binned is not None:
            values, edges = binned
            xlabels = bin_labels(edges) if xlabels is None else xlabels
        chart = charts.histogram(title, series, values, iteration, labels, xlabels, xaxis, yaxis, mode, data_args, extra_layout)
        if binned is not None:
            for trace in chart["traces"]:
                trace["bin_edges"] = edges
        self._chart(chart)

    def report_vector(self, title: str, series: str, values: Any, iteration: int | None = None, labels: Any = None,
                      xlabels: Any = None, xaxis: str | None = None, yaxis: str | None = None, mode: str | None = None,
                      extra_layout: dict | None = None) -> None:
        """A vector as bars: the same as `report_histogram`."""
        self.report_histogram(title, series, values, iteration, labels, xlabels, xaxis, yaxis, mode, None, extra_layout)

    def report_line_plot(self, title: str, series: Any, xaxis: str, yaxis: str, mode: str = "lines",
                         iteration: int | None = None, reverse_xaxis: bool = False, comment: str | None = None,
                         extra_layout: dict | None = None) -> None:
        """Several lines on one chart: `series` is a list of `Logger.SeriesInfo(name, data, labels)`,
        each `data` an N x 2 array of (x, y) points. mode: 'lines', 'markers' or 'lines+markers'."""
        self._chart(charts.line_plot(title, series, xaxis, yaxis, mode, iteration, reverse_xaxis, comment, extra_layout))

    def report_scatter2d(self, title: str, series: str, scatter: Any, iteration: int | None = None, xaxis: str | None = None,
                         yaxis: str | None = None, labels: Any = None, mode: str = "lines", comment: str | None = None,
                         extra_layout: dict | None = None) -> None:
        """One series of (x, y) points (an N x 2 array); labels: one per point."""
        self._chart(charts.scatter2d(title, series, scatter, iteration, xaxis, yaxis, labels, mode, comment, extra_layout))

    def report_scatter3d(self, title: str, series: str, scatter: Any, iteration: int | None = None, xaxis: str | None = None,
                         yaxis: str | None = None, zaxis: str | None = None, labels: Any = None, mode: str = "markers",
                         fill: bool = False, comment: str | None = None, extra_layout: dict | None = None) -> None:
        """One series of (x, y, z) points (an N x 3 array)."""
        self._chart(charts.scatter3d(title, series, scatter, iteration, xaxis, yaxis, zaxis, labels, mode, fill, comment, extra_layout))

    def report_confusion_matrix(self, title: str, series: str, matrix: Any, iteration: int | None = None,
                                xaxis: str | None = None, yaxis: str | None = None, xlabels: Any = None,
                                ylabels: Any = None, yaxis_reversed: bool = False, comment: str | None = None,
                                extra_layout: dict | None = None) -> None:
        """A matrix of counts: rows are true classes (`ylabels`), columns predicted ones (`xlabels`)."""
        self._chart(charts.matrix("confusion_matrix", title, series, matrix, iteration, xaxis, yaxis, None, xlabels, ylabels,
                                  yaxis_reversed, None, comment, extra_layout))

    def report_matrix(self, title: str, series: str, matrix: Any, iteration: int | None = None, xaxis: str | None = None,
                      yaxis: str | None = None, xlabels: Any = None, ylabels: Any = None, yaxis_reversed: bool = False,
                      extra_layout: dict | None = None) -> None:
        """ClearML's older name for `report_confusion_matrix`."""
        self.report_confusion_matrix(title, series, matrix, iteration, xaxis, yaxis, xlabels, ylabels, yaxis_reversed, None, extra_layout)

    def report_surface(self, title: str, series: str, matrix: Any, iteration: int | None = None, xaxis: str | None = None,
                       yaxis: str | None = None, zaxis: str | None = None, xlabels: Any = None, ylabels: Any = None,
                       camera: Any = None, comment: str | None = None, extra_layout: dict | None = None) -> None:
        """A 3-D surface: `matrix` holds the heights, one row per y value."""
        self._chart(charts.matrix("surface", title, series, matrix, iteration, xaxis, yaxis, zaxis, xlabels, ylabels,
                                  False, camera, comment, extra_layout))

    def report_plotly(self, title: str, series: str, figure: Any, iteration: int | None = None) -> None:
        """A plotly figure (or its dict), kept as it is."""
        self._chart(charts.plotly(title, series, figure, iteration))

    def _chart(self, chart: dict) -> None:
        self._plot(chart["title"], chart["series"], chart["iteration"], CHART, charts.to_json(chart))

    # -- reporting settings ----------------------------------------------------------------

    @classmethod
    def set_reporting_nan_value(cls, value: float, warn_period: int = 1000) -> None:
        """Store NaN in reported charts and scalars as `value` (by default charts store null, scalars NaN)."""
        charts.special_values["nan"] = float(value)

    @classmethod
    def set_reporting_inf_value(cls, value: float, warn_period: int = 1000) -> None:
        """Store +/-infinity in reported charts as +/-`value` (by default: null)."""
        charts.special_values["inf"] = float(value)

    def set_default_upload_destination(self, uri: str) -> None:
        """Kept for ClearML scripts: labpipe stores every report in its own store, whatever the destination."""
        Logger._upload_destination = str(uri)

    def get_default_upload_destination(self) -> str:
        """Where ClearML would upload images and media; labpipe keeps them in the store (its blobs folder)."""
        return Logger._upload_destination or str(self._task.db.blobs_dir)

    def set_flush_period(self, period: float) -> None:
        """Kept for ClearML scripts: labpipe writes each report when it is made, so there is nothing to flush."""
        Logger._flush_period = float(period)

    def get_flush_period(self) -> float | None:
        return Logger._flush_period or None

    def set_default_debug_sample_history(self, max_history: int) -> None:
        """Kept for ClearML scripts: labpipe keeps every reported image and media file."""
        Logger._sample_history = int(max_history)

    def get_default_debug_sample_history(self) -> int:
        return Logger._sample_history or 0

    @classmethod
    def tensorboard_auto_group_scalars(cls, group_scalars: bool = False) -> None:
        """ClearML's TensorBoard binding: labpipe captures no TensorBoard output, so this changes nothing."""

    @classmethod
    def tensorboard_single_series_per_graph(cls, single_series: bool = False) -> None:
        """ClearML's TensorBoard binding: labpipe captures no TensorBoard output, so this changes nothing."""

    @classmethod
    def matplotlib_force_report_non_interactive(cls, force: bool) -> None:
        """labpipe always stores a reported matplotlib figure as a PNG (never as an interactive chart)."""

    def capture_logging(self):
        """A context manager: `logging` records made inside it also go to this task's console."""
        import contextlib
        import logging

        task = self._task

        class _ToConsole(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    outputs.add_console(task.db, task.id, "log", self.format(record) + "\n")
                except Exception:  # a logging handler must never raise into the caller
                    self.handleError(record)

        @contextlib.contextmanager
        def captured():
            handler = _ToConsole()
            root = logging.getLogger()
            root.addHandler(handler)
            try:
                yield self
            finally:
                root.removeHandler(handler)

        return captured()

    def report_single_value(self, name: str, value: float) -> None:
        """A single summary number (ClearML's 'Summary' table)."""
        outputs.add_scalars(self._task.db, self._task.id, [(SUMMARY, str(name), 0, _number(value, SUMMARY, name))])

    def report_text(self, msg: str, level: int = 20, print_console: bool = True, **_ignored: Any) -> None:
        """A line in the task's console log (printed too unless print_console=False)."""
        text = str(msg)
        if print_console:
            print(text)
            if self._console_captured():  # the printed line reaches the console log already
                return
        outputs.add_console(self._task.db, self._task.id, "text", text if text.endswith("\n") else text + "\n")

    def _console_captured(self) -> bool:
        """Whether this process's stdout already goes to this task's console (a worker running the task,
        or a `Task.init` script), so a printed line must not be recorded twice."""
        import os
        import sys

        from .console import ConsoleTee
        from .task import ENV_TASK_ID

        if os.environ.get(ENV_TASK_ID) == self._task.id:
            return True
        return isinstance(sys.stdout, ConsoleTee) and sys.stdout._task_id == self._task.id

    def report_matplotlib_figure(self, title: str, series: str, figure: Any, iteration: int | None = None, report_image: bool = False,
                                 report_interactive: bool = True, **_ignored: Any) -> None:
        """Store a matplotlib figure as a PNG plot."""
        buf = io.BytesIO()
        fig = figure if hasattr(figure, "savefig") else figure.gcf()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        self._plot(title, series, iteration, "image", buf.getvalue())

    def report_image(self, title: str, series: str, iteration: int | None = None, local_path: str | None = None, image: Any = None,
                     matrix: Any = None, max_image_history: int | None = None, delete_after_upload: bool = False,
                     url: str | None = None) -> None:
        """Store an image: a file path (`local_path`, or `url` that `StorageManager` can fetch), or a numpy
        array / PIL image (`image`; `matrix` is ClearML's older name). delete_after_upload removes the local file."""
        image = image if image is not None else matrix
        given = [a for a, v in (("local_path", local_path), ("image", image), ("url", url)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"report_image({title!r}, {series!r}): pass exactly one of local_path=, image= or url= (got {', '.join(given) or 'none'})")
        if image is not None:
            buf = io.BytesIO()
            if hasattr(image, "save"):
                image.save(buf, format="PNG")
            else:
                import matplotlib.image

                matplotlib.image.imsave(buf, image, format="png")
            data = buf.getvalue()
        else:
            data = self._read_file(local_path or url, f"report_image({title!r}, {series!r})")
        self._plot(title, series, iteration, IMAGE, data)
        if delete_after_upload and local_path:
            os.unlink(local_path)

    def report_image_and_upload(self, title: str, series: str, iteration: int | None = None, path: str | None = None,
                                matrix: Any = None, max_image_history: int | None = None, delete_after_upload: bool = False) -> None:
        """ClearML's older name for `report_image`."""
        self.report_image(title, series, iteration, local_path=path, matrix=matrix, delete_after_upload=delete_after_upload)

    def report_media(self, title: str, series: str, iteration: int | None = None, local_path: str | None = None,
                     stream: Any = None, file_extension: str | None = None, max_history: int | None = None,
                     delete_after_upload: bool = False, url: str | None = None) -> None:
        """Store a media file (video, audio, HTML, ...): a file path (`local_path` or `url`), or a binary or
        text stream with its `file_extension` ('.mp4', '.html', ...)."""
        what = f"report_media({title!r}, {series!r})"
        given = [a for a, v in (("local_path", local_path), ("stream", stream), ("url", url)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"{what}: pass exactly one of local_path=, stream= or url= (got {', '.join(given) or 'none'})")
        if stream is not None:
            if not file_extension:
                raise ValueError(f"{what}: a stream needs file_extension= ('.mp4', '.html', ...)")
            data = stream.read()
            data = data.encode() if isinstance(data, str) else bytes(data)
        else:
            path = local_path or url
            data = self._read_file(path, what)
            file_extension = file_extension or os.path.splitext(str(path))[1]
        ext = str(file_extension or "")
        ext = ext if not ext or ext.startswith(".") else "." + ext
        if len(ext) > 16 or any(not (c.isalnum() or c == ".") for c in ext):
            raise ValueError(f"{what}: file_extension {ext!r} is not a file extension (letters and digits after a dot)")
        self._plot(title, series, iteration, f"{MEDIA}:{ext}", data)
        if delete_after_upload and local_path:
            os.unlink(local_path)

    @staticmethod
    def _read_file(path: str, what: str) -> bytes:
        from .storage import StorageManager

        local = StorageManager.get_local_copy(str(path))
        if local is None or not os.path.isfile(local):
            raise ValueError(f"{what}: {path} is not a file that can be read")
        with open(local, "rb") as fh:
            return fh.read()

    def report_table(self, title: str, series: str, iteration: int | None = None, table_plot: Any = None, csv: str | None = None,
                     url: str | None = None, extra_layout: dict | None = None, extra_data: dict | None = None) -> None:
        """Store a table: a pandas DataFrame, a list of rows, or a CSV file path (`csv=`)."""
        if table_plot is not None and hasattr(table_plot, "to_csv"):
            text = table_plot.to_csv()
        elif table_plot is not None:
            import csv as _csv

            out = io.StringIO()
            _csv.writer(out).writerows(table_plot)
            text = out.getvalue()
        elif csv is not None or url is not None:
            from .storage import StorageManager

            with open(StorageManager.get_local_copy(csv or url), encoding="utf-8") as fh:
                text = fh.read()
        else:
            raise ValueError(f"report_table({title!r}, {series!r}): pass table_plot=, csv= or url=")
        self._plot(title, series, iteration, "table", text.encode())

    def _plot(self, title: str, series: str, iteration: int, kind: str, data: bytes) -> None:
        ref = blobs.prepare(self._task.db, [data], what=f"plot {title}/{series} of task {self._task.id}")
        outputs.add_plot(self._task.db, self._task.id, str(title), str(series), int(iteration or 0), kind, ref)

    def get_plots(self) -> list[dict]:
        """The plots reported on this task, in order: dicts of title, series, iteration, kind and data.

        kind 'image': PNG (or the file's) bytes; 'table': CSV text; 'chart': the chart as a dict (see
        `labpipe.charts`: its 'type' says histogram, line, scatter2d, ...); 'media': the file's bytes, with
        'file_extension'.
        """
        out = []
        for r in outputs.get_plots(self._task.db, self._task.id):
            data = bytes(blobs.read(self._task.db, r["hash"], what=f"plot {r['title']}/{r['series']} of task {self._task.id}"))
            kind, _, ext = r["kind"].partition(":")
            plot = {"title": r["title"], "series": r["series"], "iteration": r["iteration"], "kind": kind}
            plot["data"] = data.decode() if kind == TABLE else json.loads(data) if kind == CHART else data
            if kind == MEDIA:
                plot["file_extension"] = ext
            out.append(plot)
        return out

    def flush(self, wait: bool = False) -> bool:
        """Reports are written at once; kept for ClearML compatibility."""
        return True


def _number(value: Any, title: str, series: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scalar {title}/{series}: value {value!r} is not a number") from None
    if math.isnan(number):
        chosen = charts.special_values["nan"]  # Logger.set_reporting_nan_value
        return float("nan") if chosen is None else chosen
    return number


def counts_and_edges(values: Any) -> tuple[list, list[float]] | None:
    """`(counts, bin_edges)` when `values` is what `np.histogram` returns (a pair of flat sequences, the
    edges one longer than the counts), else None. No other value has that shape: as rows of bars, two
    rows of different lengths are an error."""
    if not isinstance(values, (tuple, list)) or len(values) != 2:
        return None
    counts, edges = (v.tolist() if hasattr(v, "tolist") else v for v in values)
    flat = all(isinstance(v, (list, tuple)) and not any(isinstance(x, (list, tuple, str, bytes)) for x in v) for v in (counts, edges))
    if not flat or len(edges) != len(counts) + 1:
        return None
    try:
        return list(counts), [float(e) for e in edges]
    except (TypeError, ValueError):
        return None


def bin_labels(edges: list[float]) -> list[str]:
    """A label per bin: '[lo, hi)', the last one '[lo, hi]' (np.histogram's last bin holds its right edge)."""
    last = len(edges) - 2
    return [f"[{lo:.6g}, {hi:.6g}{']' if i == last else ')'}" for i, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False))]


# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(Logger, "Logger")
