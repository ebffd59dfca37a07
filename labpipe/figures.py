"""Drawing what tasks reported, with matplotlib (imported here, only when something is drawn).

- `draw_scalars`: a task's scalar curves, one panel per title, one line per series; several tasks
  overlay their curves (the line's label names the task).
- `draw_chart`: one chart document of `labpipe.charts` (histogram, line, scatter, confusion matrix,
  surface) as a PNG. A plotly figure has no faithful matplotlib drawing and is kept as JSON only.
"""

from __future__ import annotations

import io
import math
from typing import Any

DRAWABLE = ("histogram", "line", "scatter2d", "scatter3d", "confusion_matrix", "surface")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def draw_scalars(curves: list[tuple[str, dict[str, dict[str, dict[str, list]]]]]) -> bytes:
    """PNG of scalar curves. curves: (label, {title: {series: {'x': [...], 'y': [...]}}}) per task; the
    label is left out of the legend when there is one task."""
    plt = _pyplot()
    titles = sorted({title for _, scalars in curves for title in scalars})
    cols = min(3, len(titles))
    rows = math.ceil(len(titles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, title in zip(axes.flat, titles, strict=False):
        for label, scalars in curves:
            for series, points in sorted(scalars.get(title, {}).items()):
                name = series if len(curves) == 1 else f"{label} {series}"
                marker = "o" if len(points["x"]) <= 1 else None
                ax.plot(points["x"], points["y"], marker=marker, label=name)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(titles):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def draw_chart(chart: dict) -> bytes:
    """PNG of one chart document (its `type` must be in DRAWABLE)."""
    kind = chart["type"]
    if kind not in DRAWABLE:
        raise ValueError(f"a {kind} chart cannot be drawn with matplotlib; it is kept as JSON")
    plt = _pyplot()
    layout = chart.get("layout", {})
    three_d = kind in ("scatter3d", "surface")
    fig = plt.figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot(projection="3d") if three_d else fig.add_subplot()
    _DRAW[kind](ax, chart["traces"], layout)
    ax.set_title(f"{chart['title']} / {chart['series']}" if chart.get("series") else chart["title"])
    if layout.get("xaxis"):
        ax.set_xlabel(layout["xaxis"])
    if layout.get("yaxis"):
        ax.set_ylabel(layout["yaxis"])
    if three_d and layout.get("zaxis"):
        ax.set_zlabel(layout["zaxis"])
    if layout.get("comment"):
        fig.text(0.5, 0.01, layout["comment"], ha="center", fontsize="small", color="#555")
    return _png(fig)


def _nan(values: list) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _histogram(ax: Any, traces: list[dict], layout: dict) -> None:
    mode = layout.get("mode", "group")
    count = max(len(t["y"]) for t in traces) if traces else 0
    positions = list(range(count))
    width = 0.8 / (len(traces) if mode == "group" else 1)
    bottoms = [0.0] * count
    for i, trace in enumerate(traces):
        ys = _nan(trace["y"])
        xs = [p + (i - (len(traces) - 1) / 2) * width for p in positions] if mode == "group" else positions
        ax.bar(xs[:len(ys)], ys, width=width, label=trace["name"], bottom=bottoms[:len(ys)] if mode != "group" else 0)
        if mode != "group":
            bottoms = [b + (y if not math.isnan(y) else 0) for b, y in zip(bottoms, ys, strict=False)]
    labels = traces[0]["x"] if traces else []
    ax.set_xticks(positions, [str(x) for x in labels], rotation=45 if max((len(str(x)) for x in labels), default=0) > 4 else 0)
    if len(traces) > 1:
        ax.legend(fontsize="small")


def _lines(ax: Any, traces: list[dict], layout: dict) -> None:
    for trace in traces:
        mode = trace.get("mode", "lines")
        style = {"lines": "-", "markers": "o", "lines+markers": "-o"}.get(mode, "-")
        ax.plot(_nan(trace["x"]), _nan(trace["y"]), style, label=trace["name"], markersize=4)
        for x, y, text in zip(trace["x"], trace["y"], trace.get("labels") or [], strict=False):
            ax.annotate(text, (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    if layout.get("reverse_xaxis"):
        ax.invert_xaxis()
    ax.grid(alpha=0.3)
    if len(traces) > 1:
        ax.legend(fontsize="small")


def _scatter3d(ax: Any, traces: list[dict], layout: dict) -> None:
    for trace in traces:
        ax.scatter(_nan(trace["x"]), _nan(trace["y"]), _nan(trace["z"]), label=trace["name"])


def _confusion(ax: Any, traces: list[dict], layout: dict) -> None:
    trace = traces[0]
    rows = [_nan(r) for r in trace["z"]]
    image = ax.imshow(rows, cmap="Blues", aspect="auto", origin="upper" if layout.get("yaxis_reversed") else "lower")
    ax.figure.colorbar(image, ax=ax)
    ax.set_xticks(range(len(trace["x"])), [str(x) for x in trace["x"]])
    ax.set_yticks(range(len(trace["y"])), [str(y) for y in trace["y"]])
    top = max((v for r in rows for v in r if not math.isnan(v)), default=0)
    if len(rows) * len(rows[0]) <= 400:  # numbers in the cells, while they can be read
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                ax.text(j, i, "" if math.isnan(v) else f"{v:g}", ha="center", va="center", fontsize="small",
                        color="white" if v > top / 2 else "black")


def _surface(ax: Any, traces: list[dict], layout: dict) -> None:
    import numpy as np

    trace = traces[0]
    z = np.array([_nan(r) for r in trace["z"]], dtype=float)
    xs, ys = np.meshgrid(np.arange(z.shape[1]), np.arange(z.shape[0]))
    ax.plot_surface(xs, ys, z, cmap="viridis")
    camera = layout.get("camera")
    if camera and len(camera) == 3:
        x, y, zc = camera
        ax.view_init(elev=math.degrees(math.atan2(zc, math.hypot(x, y))), azim=math.degrees(math.atan2(y, x)))


_DRAW = {"histogram": _histogram, "line": _lines, "scatter2d": _lines, "scatter3d": _scatter3d,
         "confusion_matrix": _confusion, "surface": _surface}
