"""ClearML's `Logger`: scalars, single values, text, figures and tables reported on a task."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from .store import blobs, outputs

if TYPE_CHECKING:
    from .task import Task

SUMMARY = "Summary"


class Logger:
    """Reports metrics on a task. Get one with `task.get_logger()` or `Logger.current_logger()`."""

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
        outputs.add_scalars(self._task._db, self._task.id, [(str(title), str(series), int(iteration or 0), _number(value, title, series))])

    def report_single_value(self, name: str, value: float) -> None:
        """A single summary number (ClearML's 'Summary' table)."""
        outputs.add_scalars(self._task._db, self._task.id, [(SUMMARY, str(name), 0, _number(value, SUMMARY, name))])

    def report_text(self, msg: str, level: int = 20, print_console: bool = True, **_ignored: Any) -> None:
        """A line in the task's console log (printed too unless print_console=False)."""
        text = str(msg)
        if print_console:
            print(text)
            if self._console_captured():  # the printed line reaches the console log already
                return
        outputs.add_console(self._task._db, self._task.id, "text", text if text.endswith("\n") else text + "\n")

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

    def report_matplotlib_figure(self, title: str, series: str, figure: Any, iteration: int = 0, report_image: bool = False, **_ignored: Any) -> None:
        """Store a matplotlib figure as a PNG plot."""
        buf = io.BytesIO()
        fig = figure if hasattr(figure, "savefig") else figure.gcf()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        self._plot(title, series, iteration, "image", buf.getvalue())

    def report_image(self, title: str, series: str, iteration: int = 0, local_path: str | None = None, image: Any = None, **_ignored: Any) -> None:
        """Store an image: a PNG/JPEG file path, or a numpy array / PIL image."""
        if local_path is not None:
            with open(local_path, "rb") as fh:
                data = fh.read()
        elif image is not None:
            buf = io.BytesIO()
            if hasattr(image, "save"):
                image.save(buf, format="PNG")
            else:
                import matplotlib.image

                matplotlib.image.imsave(buf, image, format="png")
            data = buf.getvalue()
        else:
            raise ValueError(f"report_image({title!r}, {series!r}): pass local_path= or image=")
        self._plot(title, series, iteration, "image", data)

    def report_table(self, title: str, series: str, iteration: int = 0, table_plot: Any = None, csv: str | None = None, url: str | None = None, **_ignored: Any) -> None:
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
        ref = blobs.prepare(self._task._db, [data], what=f"plot {title}/{series} of task {self._task.id}")
        outputs.add_plot(self._task._db, self._task.id, str(title), str(series), int(iteration or 0), kind, ref)

    def get_plots(self) -> list[dict]:
        """The plots reported on this task: title, series, iteration, kind ('image' PNG bytes or 'table' CSV text), data."""
        out = []
        for r in outputs.get_plots(self._task._db, self._task.id):
            data = bytes(blobs.read(self._task._db, r["hash"], what=f"plot {r['title']}/{r['series']} of task {self._task.id}"))
            out.append({"title": r["title"], "series": r["series"], "iteration": r["iteration"], "kind": r["kind"],
                        "data": data.decode() if r["kind"] == "table" else data})
        return out

    def flush(self, wait: bool = False) -> bool:
        """Reports are written at once; kept for ClearML compatibility."""
        return True


def _number(value: Any, title: str, series: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scalar {title}/{series}: value {value!r} is not a number") from None
    return number if not math.isnan(number) else float("nan")
