"""Charts a Logger reports, as plain data: one JSON document per report, drawn later by whoever shows it.

ClearML sends its charts to the server as plotly figures. labpipe has no server, and a chart is
worth keeping whatever draws it (a PNG today, a web page later), so each report is stored as a small
document that names what it is and holds the numbers:

    {"type": "histogram", "title": ..., "series": ..., "iteration": 0,
     "traces": [{"name": "A", "x": [...], "y": [...]}, ...],
     "layout": {"xaxis": "epoch", "yaxis": "loss", ...}}

`type` is one of CHART_TYPES. A trace holds `x`/`y` (and `z` for 3-D), optionally `labels` (one per
point) and `mode` (lines / markers / lines+markers). Matrices (confusion matrix, surface) are one trace
with `z` as a list of rows and `x`/`y` as the column and row labels. NaN and infinities become null
(strict JSON), unless `Logger.set_reporting_nan_value` / `set_reporting_inf_value` chose a number.

Everything here is pure: numbers in, a dict out, with a `ValueError` that names the chart and what
is wrong with the numbers. numpy arrays are accepted without importing numpy (`tolist()`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHART_TYPES = ("histogram", "line", "scatter2d", "scatter3d", "confusion_matrix", "surface", "plotly")
HISTOGRAM_MODES = ("group", "stack", "relative")
SCATTER_MODES = ("lines", "markers", "lines+markers")

#: what NaN and +/-infinity are stored as (None: JSON null); set by Logger.set_reporting_*_value
special_values: dict[str, float | None] = {"nan": None, "inf": None}


@dataclass
class SeriesInfo:
    """One line of `Logger.report_line_plot`: its name, its points (N x 2: x, y) and optional point labels."""

    name: str
    data: Any
    labels: Sequence[str] | None = None


def _plain(values: Any) -> Any:
    return values.tolist() if hasattr(values, "tolist") else values


def _number(value: Any, what: str) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if math.isnan(number):
        return special_values["nan"]
    if math.isinf(number):
        inf = special_values["inf"]
        return None if inf is None else math.copysign(inf, number)
    return number


def _vector(values: Any, what: str) -> list[float | None]:
    values = _plain(values)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{what}: expected a list of numbers, got {type(values).__name__}")
    return [_number(v, what) for v in values]


def _matrix(values: Any, what: str, columns: int | None = None) -> list[list[float | None]]:
    """Rows of numbers, all of one length (`columns` of them when given). A flat list is one row."""
    values = _plain(values)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{what}: expected a 2-D array or a list of rows, got {type(values).__name__}")
    if values and not any(isinstance(v, Sequence) and not isinstance(v, str) for v in values):
        values = [values]
    rows = [_vector(row, what) for row in values]
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ValueError(f"{what}: rows have different lengths {sorted(widths)}; every row needs the same number of values")
    if columns is not None and rows and widths != {columns}:
        raise ValueError(f"{what}: expected {columns} columns per point, got {widths.pop()}")
    return rows


def _labels(labels: Any, count: int, what: str, of: str) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(x) for x in _plain(labels)]
    if len(labels) != count:
        raise ValueError(f"{what}: {len(labels)} {of} given for {count} values; give one each, or none")
    return labels


def _choice(value: str, allowed: Sequence[str], what: str, argument: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what}: {argument}={value!r} is not one of {', '.join(allowed)}")
    return value


def _layout(**fields: Any) -> dict:
    extra = fields.pop("extra_layout", None)
    layout = {k: v for k, v in fields.items() if v not in (None, False, "")}
    if extra:
        if not isinstance(extra, dict):
            raise ValueError(f"extra_layout must be a dict, got {type(extra).__name__}")
        layout["extra"] = extra
    return layout


def _chart(kind: str, title: str, series: str, iteration: int | None, traces: list[dict], layout: dict) -> dict:
    return {"type": kind, "title": str(title), "series": str(series), "iteration": int(iteration or 0),
            "traces": traces, "layout": layout}


def histogram(title: str, series: str, values: Any, iteration: int | None = None, labels: Any = None,
              xlabels: Any = None, xaxis: str | None = None, yaxis: str | None = None, mode: str | None = None,
              data_args: dict | None = None, extra_layout: dict | None = None) -> dict:
    """Bars already counted: each row of `values` is one series of bars (a flat list is one series)."""
    what = f"histogram {title}/{series}"
    rows = _matrix(values, what)
    width = len(rows[0]) if rows else 0
    if labels is not None and len(_plain(labels)) == 1:  # one label for every row, as ClearML allows
        labels = [_plain(labels)[0]] * len(rows)
    names = _labels(labels, len(rows), what, "labels")
    x = _labels(xlabels, width, what, "xlabels") or list(range(width))
    traces = [{"name": names[i] if names else str(series), "x": x, "y": row} for i, row in enumerate(rows)]
    if data_args:
        for t in traces:
            t["args"] = dict(data_args)
    layout = _layout(xaxis=xaxis, yaxis=yaxis, mode=_choice(mode or "group", HISTOGRAM_MODES, what, "mode"), extra_layout=extra_layout)
    return _chart("histogram", title, series, iteration, traces, layout)


def line_plot(title: str, series: Sequence[SeriesInfo], xaxis: str, yaxis: str, mode: str = "lines",
              iteration: int | None = None, reverse_xaxis: bool = False, comment: str | None = None,
              extra_layout: dict | None = None) -> dict:
    """Several named lines on one chart, each a `SeriesInfo` of (x, y) points."""
    what = f"line plot {title}"
    if isinstance(series, SeriesInfo):
        series = [series]
    traces = []
    for s in series:
        if not isinstance(s, SeriesInfo):
            raise ValueError(f"{what}: each series must be a Logger.SeriesInfo(name, data, labels), got {type(s).__name__}")
        points = _matrix(s.data, f"{what}, series {s.name!r}", columns=2)
        traces.append({"name": str(s.name), "x": [p[0] for p in points], "y": [p[1] for p in points],
                       "mode": _choice(mode, SCATTER_MODES, what, "mode"),
                       **({"labels": _labels(s.labels, len(points), what, "labels")} if s.labels is not None else {})})
    layout = _layout(xaxis=xaxis, yaxis=yaxis, reverse_xaxis=reverse_xaxis, comment=comment, extra_layout=extra_layout)
    return _chart("line", title, "", iteration, traces, layout)


def scatter2d(title: str, series: str, scatter: Any, iteration: int | None = None, xaxis: str | None = None,
              yaxis: str | None = None, labels: Any = None, mode: str = "lines", comment: str | None = None,
              extra_layout: dict | None = None) -> dict:
    """Points (N x 2: x, y) of one series."""
    what = f"scatter2d {title}/{series}"
    points = _matrix(scatter, what, columns=2)
    trace = {"name": str(series), "x": [p[0] for p in points], "y": [p[1] for p in points],
             "mode": _choice(mode, SCATTER_MODES, what, "mode")}
    if labels is not None:
        trace["labels"] = _labels(labels, len(points), what, "labels")
    return _chart("scatter2d", title, series, iteration, [trace], _layout(xaxis=xaxis, yaxis=yaxis, comment=comment, extra_layout=extra_layout))


def scatter3d(title: str, series: str, scatter: Any, iteration: int | None = None, xaxis: str | None = None,
              yaxis: str | None = None, zaxis: str | None = None, labels: Any = None, mode: str = "markers",
              fill: bool = False, comment: str | None = None, extra_layout: dict | None = None) -> dict:
    """Points (N x 3: x, y, z) of one series."""
    what = f"scatter3d {title}/{series}"
    points = _matrix(scatter, what, columns=3)
    trace = {"name": str(series), "x": [p[0] for p in points], "y": [p[1] for p in points], "z": [p[2] for p in points],
             "mode": _choice(mode, SCATTER_MODES, what, "mode")}
    if labels is not None:
        trace["labels"] = _labels(labels, len(points), what, "labels")
    layout = _layout(xaxis=xaxis, yaxis=yaxis, zaxis=zaxis, fill=fill, comment=comment, extra_layout=extra_layout)
    return _chart("scatter3d", title, series, iteration, [trace], layout)


def matrix(kind: str, title: str, series: str, values: Any, iteration: int | None = None, xaxis: str | None = None,
           yaxis: str | None = None, zaxis: str | None = None, xlabels: Any = None, ylabels: Any = None,
           yaxis_reversed: bool = False, camera: Any = None, comment: str | None = None,
           extra_layout: dict | None = None) -> dict:
    """A confusion matrix or a surface: `values` as rows, `xlabels` naming its columns and `ylabels` its rows."""
    what = f"{kind.replace('_', ' ')} {title}/{series}"
    rows = _matrix(values, what)
    if not rows or not rows[0]:
        raise ValueError(f"{what}: the matrix is empty")
    trace = {"name": str(series), "z": rows,
             "x": _labels(xlabels, len(rows[0]), what, "xlabels") or list(range(len(rows[0]))),
             "y": _labels(ylabels, len(rows), what, "ylabels") or list(range(len(rows)))}
    camera = list(_plain(camera)) if camera is not None else None
    layout = _layout(xaxis=xaxis, yaxis=yaxis, zaxis=zaxis, yaxis_reversed=yaxis_reversed, camera=camera,
                     comment=comment, extra_layout=extra_layout)
    return _chart(kind, title, series, iteration, [trace], layout)


def plotly(title: str, series: str, figure: Any, iteration: int | None = None) -> dict:
    """A plotly figure, kept as its dict (`figure.to_dict()`, or a dict with `data` and `layout`)."""
    what = f"plotly figure {title}/{series}"
    if hasattr(figure, "to_plotly_json"):
        figure = figure.to_plotly_json()
    elif hasattr(figure, "to_dict"):
        figure = figure.to_dict()
    if not isinstance(figure, dict) or "data" not in figure:
        raise ValueError(f"{what}: expected a plotly Figure or a dict with 'data' (and 'layout'), got {type(figure).__name__}")
    try:
        figure = json.loads(json.dumps(figure, default=_plain))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: the figure cannot be stored as JSON ({exc})") from None
    return _chart("plotly", title, series, iteration, list(figure.get("data") or []), {"extra": figure.get("layout") or {}})


def to_json(chart: dict) -> bytes:
    """The stored form: strict JSON (no NaN), compact."""
    return json.dumps(chart, separators=(",", ":"), allow_nan=False).encode()
