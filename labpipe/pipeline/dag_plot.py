"""Draw a pipeline DAG as a picture (PNG or SVG): boxes coloured by status, a legend for every colour.

Pure drawing, no store access: `labpipe plot ID -o dag.png` and `PipelineController.plot_dag()` pass
the run's DAG here (see render.py). Where the boxes and edges go is `dag_layout`'s business; this
module paints them. matplotlib is imported inside the functions, and only through `Figure` +
`FigureCanvasAgg`, never pyplot: no global figure state, no GUI backend, safe in any process.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import NamedTuple

from labpipe.pipeline.dag import DAG, NODE_STATUSES
from labpipe.pipeline.dag_layout import BOX_W, MARGIN, PANEL_LABEL_H, Layout, Segment, error_line, layout_dag
from labpipe.status import shown

# Box fill per status (the legend shows the same). Cached is a blue distinct from completed green
# because a cached step did not run in this pipeline run: the box says so too ("cached").
STATUS_COLORS = {
    "pending": "#f2f2f2",
    "queued": "#fbe7a6",
    "running": "#f5a524",
    "completed": "#5bb974",
    "cached": "#7fb3f0",
    "failed": "#e5484d",
    "aborted": "#8e2a2a",
    "skipped": "#bdbdbd",
}
BORDER_COLORS = {
    "pending": "#9a9a9a",
    "queued": "#b8962e",
    "running": "#a05f00",
    "completed": "#2f7d45",
    "cached": "#2f68b0",
    "failed": "#9b1c20",
    "aborted": "#4a1010",
    "skipped": "#8a8a8a",
}
# What each colour means, for the legend, after the status's word (`status_label`): a reader should
# not have to guess. The words are the CLI's (`labpipe.status.shown`): an aborted node reads "stopped".
STATUS_MEANINGS = {
    "pending": "not started",
    "queued": "waiting for a worker",
    "running": "",
    "completed": "",
    "cached": "reused an earlier run",
    "failed": "",
    "aborted": "interrupted before it finished",
    "skipped": "a parent did not succeed",
}
PANEL_COLOR, PANEL_BORDER = "#eef1f6", "#c5ccd8"
EDGE_COLOR, HEAD_COLOR = "#8a8a8a", "#6f6f6f"
# Statuses whose box shows its status word under the name, so a reader who cannot tell the
# colours apart (or prints in grey) still can; completed and pending are the unmarked norm.
SAY_STATUS = frozenset(NODE_STATUSES) - {"completed", "pending"}
DASHED = frozenset({"cached", "skipped"})
PICTURE_FORMATS = ("png", "svg")

TEXT_PAD = 0.09  # inside a box, each side
SWATCH_W = 0.22
NAME_PT, DETAIL_PT, ERROR_PT, TITLE_PT, LEGEND_PT = 9.0, 7.5, 7.0, 12.0, 8.0
MAX_INCHES = 40.0
MAX_PIXELS = 16e6  # 40 x 40 in at 100 dpi; flat-colour PNGs of that size stay around 1-2 MB


def format_duration(seconds: float | None) -> str:
    """A short human duration: "35 ms", "1.2 s", "42 s", "3 min 05 s", "2 h 07 min"; "" if unknown."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return ""
    if seconds < 0.9995:  # so that 0.9996 reads "1.0 s", not "1000 ms"
        return f"{seconds * 1000:.0f} ms"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def plot_dag(
    dag: DAG,
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    dpi: int = 100,
    format: str = "png",
) -> bytes:
    """Draw the pipeline graph as a PNG (or SVG) and return its bytes.

    Args:
        dag: the pipeline's graph.
        path: also write the picture to this file.
        title: a line above the graph (e.g. the pipeline's name and run id).
        dpi: resolution; lowered automatically for very large graphs so the image stays under
            about 16 megapixels.
        format: "png" or "svg".

    Each layer of the DAG is one column (rank); a layer of more than 40 steps folds into
    sub-columns on a shaded panel, and a graph too long for the page wraps into bands.
    """
    if format not in PICTURE_FORMATS:
        raise ValueError(f"plot_dag draws {' or '.join(PICTURE_FORMATS)}, not {format!r}")
    fig = figure(dag, title=title, dpi=dpi)
    buffer = io.BytesIO()
    # An SVG names its fonts instead of tracing glyphs: small, and its text stays text.
    metadata = {"Date": None} if format == "svg" else None
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "labpipe"}):
        fig.savefig(buffer, format=format, dpi=fig.dpi, facecolor="white", metadata=metadata)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def figure(dag: DAG, *, title: str | None = None, dpi: int = 100):
    """The drawing as a matplotlib Figure with an Agg canvas (tests inspect its artists)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = MARGIN + (0.42 if title else 0.0)
    layout: Layout | None = None
    if len(dag):
        layout = layout_dag(dag)
        legend = legend_entries(dag, layout, layout.width)
        layout = layout.shifted(top + legend[-1].y + 0.45 - MARGIN)
        width, height = layout.width, layout.height
    else:
        width, height = 3.2, top + 0.9
    scale = min(1.0, MAX_INCHES / width, MAX_INCHES / height)
    fig_w, fig_h = width * scale, height * scale
    # A scaled-down graph gets more dots per inch so its small text stays legible, within
    # the pixel budget that keeps the PNG a few MB at most.
    dpi_eff = max(10.0, min(dpi / scale, math.sqrt(MAX_PIXELS / (fig_w * fig_h))))

    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi_eff, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    # Data units are nominal inches, y pointing down: positions need no conversion at all.
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    pen = _Pen(ax, canvas.get_renderer(), scale, dpi_eff)

    if title:
        pen.text(MARGIN, MARGIN + 0.16, title, TITLE_PT, width - 2 * MARGIN, ha="left", weight="bold")
    if layout is None:
        pen.text(width / 2, top + 0.35, "empty pipeline", NAME_PT + 2, width - 2 * MARGIN, color="#777777")
    else:
        _draw_legend(pen, legend, top)
        _draw_panels(ax, pen, layout)
        _draw_edges(ax, layout, scale)
        _draw_boxes(ax, pen, dag, layout, scale)
    return fig


# -- legend ---------------------------------------------------------------------------------


class LegendEntry(NamedTuple):
    """One legend entry: what it explains ("status" or "panel"), its key, text and place."""

    kind: str
    key: str
    label: str
    x: float
    y: float  # below the legend's top
    room: float  # width the label may take


def legend_entries(dag: DAG, layout: Layout, width: float) -> list[LegendEntry]:
    """One entry per status present (with its count), and one for folded panels if any, flowing
    left to right and wrapping at `width`.

    Measured at nominal size before the figure exists, because the legend's height decides
    the figure's; the drawn text is fitted again to `room`, so a small difference cannot overflow.
    """
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, 100)
    prop = FontProperties(size=LEGEND_PT)
    counts = dag.summary()
    wanted = [("status", s, f"{status_label(s)} ({counts[s]})") for s in NODE_STATUSES if counts[s]]
    if layout.panels:
        wanted.append(("panel", "folded", "one layer, folded into columns"))
    entries: list[LegendEntry] = []
    x, y, right = MARGIN, 0.0, max(width - MARGIN, MARGIN + 3.0)
    for kind, key, label in wanted:
        text_w = renderer.get_text_width_height_descent(label, prop, ismath=False)[0] / 100 * 1.06 + 0.05
        item_w = SWATCH_W + 0.08 + text_w
        if x > MARGIN and x + item_w > right:
            x, y = MARGIN, y + 0.3
        entries.append(LegendEntry(kind, key, label, x, y, min(text_w, right - x - SWATCH_W - 0.08)))
        x += item_w + 0.3
    return entries


def status_label(status: str) -> str:
    """A node status as the legend explains it: the CLI's word for it, then what it means
    ("stopped: interrupted before it finished" for "aborted")."""
    meaning = STATUS_MEANINGS[status]
    return f"{shown(status)}: {meaning}" if meaning else shown(status)


def _draw_legend(pen: _Pen, legend: list[LegendEntry], top: float) -> None:
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import FancyBboxPatch

    swatches, faces, edges, styles = [], [], [], []
    for entry in legend:
        cy = top + 0.12 + entry.y
        swatches.append(
            FancyBboxPatch((entry.x, cy - 0.08), SWATCH_W, 0.16, boxstyle="round,pad=0,rounding_size=0.04")
        )
        if entry.kind == "status":
            faces.append(STATUS_COLORS[entry.key])
            edges.append(BORDER_COLORS[entry.key])
            styles.append((0, (3, 2)) if entry.key in DASHED else "solid")
        else:
            faces.append(PANEL_COLOR)
            edges.append(PANEL_BORDER)
            styles.append("solid")
        pen.text(entry.x + SWATCH_W + 0.08, cy, entry.label, LEGEND_PT, entry.room, ha="left", color="#333333")
    pen.ax.add_collection(
        PatchCollection(swatches, facecolors=faces, edgecolors=edges, linestyles=styles, linewidths=0.8 * pen.scale)
    )


# -- graph ----------------------------------------------------------------------------------


class _Pen:
    """Writes text that never overflows its box: too long a line is shortened in the middle."""

    def __init__(self, ax, renderer, scale: float, dpi: float) -> None:
        from matplotlib.font_manager import FontProperties

        self._font = FontProperties  # imported here, like all of matplotlib
        self.ax, self.renderer, self.scale, self.dpi = ax, renderer, scale, dpi

    def width(self, text: str, size: float, weight: str = "normal") -> float:
        """Rendered width in nominal inches."""
        prop = self._font(size=size * self.scale, weight=weight)
        w, _, _ = self.renderer.get_text_width_height_descent(text, prop, ismath=False)
        return w / self.dpi / self.scale

    def fit(self, text: str, size: float, room: float, weight: str = "normal") -> str:
        """`text`, or its start and end around an ellipsis, whichever fits in `room` inches."""
        room *= 0.97  # hinting at the final dpi can differ by a pixel or two
        text = " ".join(text.split())  # a newline or tab in a name would break out of the box
        if self.width(text, size, weight) <= room:
            return text
        # Keep both ends: pipeline step names tend to differ at the end (train_fold_1, _2, ...).
        lo, hi = 0, len(text) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(_elide(text, mid), size, weight) <= room:
                lo = mid
            else:
                hi = mid - 1
        return _elide(text, lo) if lo else ""

    def text(self, x, y, text, size, room, *, ha="center", weight="normal", color="#1a1a1a") -> None:
        """Write `text` at (x, y), vertically centred, shortened to `room` inches if need be."""
        fitted = self.fit(text, size, room, weight)
        if fitted:
            self.ax.text(
                x,
                y,
                fitted,
                fontsize=size * self.scale,
                ha=ha,
                va="center",
                weight=weight,
                color=color,
                parse_math=False,
                clip_on=False,
            )


def _elide(text: str, keep: int) -> str:
    head = (keep + 1) // 2
    tail = keep // 2
    return text[:head] + "…" + (text[len(text) - tail :] if tail else "")


def _draw_panels(ax, pen: _Pen, layout: Layout) -> None:
    """A folded layer's shaded panel, labelled so its columns read as one layer."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import FancyBboxPatch

    if not layout.panels:
        return
    patches = []
    for p in layout.panels:
        patches.append(FancyBboxPatch((p.x, p.y), p.w, p.h, boxstyle="round,pad=0,rounding_size=0.12"))
        label = f"layer {p.rank + 1} · {p.steps} steps in {p.columns} columns"
        pen.text(p.x + 0.1, p.y - PANEL_LABEL_H / 2, label, LEGEND_PT, p.w - 0.2, ha="left", color="#4a5568")
    ax.add_collection(
        PatchCollection(patches, facecolors=PANEL_COLOR, edgecolors=PANEL_BORDER, linewidths=0.8 * pen.scale, zorder=0)
    )


def _draw_edges(ax, layout: Layout, scale: float) -> None:
    from matplotlib.collections import PatchCollection, PathCollection
    from matplotlib.patches import Polygon
    from matplotlib.path import Path as MPath

    head_len, head_w = 0.11, 0.09
    paths, heads = [], []
    for segments in {id(s): s for s in layout.edges.values()}.values():  # a bundled edge once
        if not segments:
            continue
        verts, codes = [segments[0].a], [MPath.MOVETO]
        for s in segments[:-1]:
            _add_segment(verts, codes, s)
        last = segments[-1]
        # The arrowhead takes the last bit, pointing the way the edge arrives (a curve: rightwards).
        (ax0, ay0), tip = last.a, last.b
        length = math.dist(last.a, tip) if last.kind == "line" else 0.0
        dx, dy = ((tip[0] - ax0) / length, (tip[1] - ay0) / length) if length else (1.0, 0.0)
        base = (tip[0] - dx * head_len, tip[1] - dy * head_len)
        _add_segment(verts, codes, Segment(last.kind, last.a, base))
        paths.append(MPath(verts, codes))
        side = (-dy * head_w / 2, dx * head_w / 2)
        heads.append(Polygon([(base[0] + side[0], base[1] + side[1]), tip, (base[0] - side[0], base[1] - side[1])],
                             closed=True))
    if not paths:
        return
    # One collection for all edges and one for all arrowheads: a 100-node graph draws in a
    # few milliseconds, where one annotate() per edge takes most of a second.
    ax.add_collection(PathCollection(paths, facecolors="none", edgecolors=EDGE_COLOR, linewidths=1.0 * scale, zorder=1))
    ax.add_collection(PatchCollection(heads, facecolors=HEAD_COLOR, edgecolors="none", zorder=1))


def _add_segment(verts: list, codes: list, s: Segment) -> None:
    """Append a segment: an S-curve leaves and arrives horizontally (so arrowheads line up)."""
    from matplotlib.path import Path as MPath

    if s.kind == "curve":
        d = max(0.3, (s.b[0] - s.a[0]) * 0.45)
        verts += [(s.a[0] + d, s.a[1]), (s.b[0] - d, s.b[1]), s.b]
        codes += [MPath.CURVE4] * 3
    else:
        verts.append(s.b)
        codes.append(MPath.LINETO)


def _draw_boxes(ax, pen: _Pen, dag: DAG, layout: Layout, scale: float) -> None:
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import FancyBboxPatch

    boxes, faces, borders, widths, styles = [], [], [], [], []
    room = BOX_W - 2 * TEXT_PAD
    for node in dag:
        x, y = layout.pos[node.name]
        h = layout.height_of[node.name]
        boxes.append(FancyBboxPatch((x, y), BOX_W, h, boxstyle="round,pad=0,rounding_size=0.08"))
        faces.append(STATUS_COLORS[node.status])
        borders.append(BORDER_COLORS[node.status])
        widths.append((2.0 if node.status == "running" else 1.0) * scale)
        styles.append((0, (3, 2)) if node.status in DASHED else "solid")

        ink = _ink_for(STATUS_COLORS[node.status])
        lines = box_lines(node)
        cx = x + BOX_W / 2
        sizes = [NAME_PT, DETAIL_PT, ERROR_PT]
        weights = ["bold", "normal", "normal"]
        step = 0.21
        first = y + h / 2 - step * (len(lines) - 1) / 2
        for i, text in enumerate(lines):
            pen.text(cx, first + i * step, text, sizes[i], room, weight=weights[i], color=ink)
    ax.add_collection(
        PatchCollection(boxes, facecolors=faces, edgecolors=borders, linewidths=widths, linestyles=styles, zorder=2)
    )


def box_lines(node) -> list[str]:
    """What a step's box says: its name; its status when not the norm, and its duration if known;
    for a failed or aborted (stopped) step, the first line of its error. Statuses in the CLI's words."""
    lines = [node.name]
    detail = detail_line(node)
    error = error_line(node.error) if node.status in ("failed", "aborted") else ""
    if detail or error:
        lines.append(detail or shown(node.status))
    if error:
        lines.append(error)
    return lines


def detail_line(node) -> str:
    """The line under a step's name: its status (the CLI's word) when not the norm, and its duration if known."""
    parts = []
    if node.status in SAY_STATUS:
        parts.append(shown(node.status))
    duration = format_duration(node.duration)
    if duration:
        parts.append(duration)
    return " · ".join(parts)


def _ink_for(fill: str) -> str:
    """Dark text on light fills, white on dark ones (WCAG relative luminance)."""
    r, g, b = (int(fill[i : i + 2], 16) / 255 for i in (1, 3, 5))
    lum = 0.2126 * _linear(r) + 0.7152 * _linear(g) + 0.0722 * _linear(b)
    return "#ffffff" if lum < 0.25 else "#1a1a1a"


def _linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
