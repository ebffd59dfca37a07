"""Draw a pipeline DAG to PNG: layered left to right, boxes coloured by status.

Pure drawing, no store access: the pipeline stores the bytes as a plot on its task and
`labpipe plot ID -o dag.png` writes them out. matplotlib is imported inside `plot_dag` (it costs
about half a second) and only through `Figure` + `FigureCanvasAgg`, never pyplot: no global
figure state, no GUI backend, safe in worker and services processes.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from labpipe.pipeline.dag import DAG, NODE_STATUSES

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
_BORDER_COLORS = {
    "pending": "#9a9a9a",
    "queued": "#b8962e",
    "running": "#a05f00",
    "completed": "#2f7d45",
    "cached": "#2f68b0",
    "failed": "#9b1c20",
    "aborted": "#4a1010",
    "skipped": "#8a8a8a",
}
# Statuses whose box shows its status word under the name, so a reader who cannot tell the
# colours apart (or prints in grey) still can; completed and pending are the unmarked norm.
_SAY_STATUS = frozenset(NODE_STATUSES) - {"completed", "pending"}
_DASHED = frozenset({"cached", "skipped"})

# Layout in "nominal" inches; a graph too big for MAX_INCHES is scaled down as a whole.
BOX_W, BOX_H = 2.0, 0.52
COL_GAP, ROW_GAP = 0.8, 0.2
COL_PITCH, ROW_PITCH = BOX_W + COL_GAP, BOX_H + ROW_GAP
BAND_GAP = 0.55  # between bands of a wrapped graph: the channel edges take to the next band
MARGIN = 0.3
EDGE_MARGIN = MARGIN + COL_GAP / 2  # left/right: room for edges that turn down to another band
TEXT_PAD = 0.09  # inside a box, each side
_SWATCH_W = 0.22
NAME_PT, DETAIL_PT, TITLE_PT, LEGEND_PT = 9.0, 7.5, 12.0, 8.0
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


@dataclass
class _Layout:
    """Where each step's box goes (top-left corner, nominal inches) and the drawing's size."""

    pos: dict[str, tuple[float, float]]
    band_of: dict[str, int]
    slot_of: dict[str, int]
    column_tops: dict[tuple[int, int], list[float]]  # (band, slot) -> box tops, top to bottom
    band_bottom: list[float]
    width: float
    height: float


def plot_dag(
    dag: DAG, path: str | os.PathLike | None = None, *, title: str | None = None, dpi: int = 100
) -> bytes:
    """Draw the pipeline graph as a PNG and return its bytes.

    Args:
        dag: the pipeline's graph.
        path: also write the PNG to this file.
        title: a line above the graph (e.g. the pipeline's name and run id).
        dpi: resolution; lowered automatically for very large graphs so the image stays under
            about 16 megapixels.

    Columns are the DAG's layers; a layer too tall for the page wraps into several columns, and
    a graph too long for the page wraps into bands stacked top to bottom.
    """
    fig = _figure(dag, title=title, dpi=dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, facecolor="white")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _figure(dag: DAG, *, title: str | None, dpi: int):
    """The drawing as a matplotlib Figure with an Agg canvas (tests inspect its artists)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = MARGIN + (0.42 if title else 0.0)
    if len(dag):
        layout = _layout(dag)
        legend = _legend_layout(dag, layout.width)
        header = top + legend[-1].y + 0.45
        layout = _shifted(layout, header)
        width, height = layout.width, layout.height
    else:
        layout = None
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
        _draw_edges(ax, dag, layout, scale)
        _draw_boxes(ax, pen, dag, layout, scale)
    return fig


# -- layout ---------------------------------------------------------------------------------


class _LegendItem(NamedTuple):
    status: str
    label: str
    x: float
    y: float  # below the legend's top
    room: float  # width the label may take


def _legend_layout(dag: DAG, width: float) -> list[_LegendItem]:
    """One entry per status present, flowing left to right and wrapping at `width`.

    Measured at nominal size before the figure exists, because the legend's height decides
    the figure's; the drawn text is fitted again to `room`, so a small difference cannot overflow.
    """
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, 100)
    prop = FontProperties(size=LEGEND_PT)
    counts = dag.summary()
    items: list[_LegendItem] = []
    x, y, right = MARGIN, 0.0, max(width - MARGIN, MARGIN + 3.0)
    for status in NODE_STATUSES:
        if not counts[status]:
            continue
        label = f"{status} ({counts[status]})"
        text_w = renderer.get_text_width_height_descent(label, prop, ismath=False)[0] / 100 + 0.05
        item_w = _SWATCH_W + 0.08 + text_w
        if x > MARGIN and x + item_w > right:
            x, y = MARGIN, y + 0.3
        items.append(_LegendItem(status, label, x, y, min(text_w, right - x - _SWATCH_W - 0.08)))
        x += item_w + 0.3
    return items


def _order_layers(dag: DAG) -> list[list[str]]:
    """The DAG's layers, each sorted so that children sit near their parents (fewer crossings)."""
    layers = dag.layers()
    rank: dict[str, float] = {}
    for layer in layers:
        for i, name in enumerate(layer):
            rank[name] = (i + 0.5) / len(layer)
    # Barycentre heuristic: one sweep down (by parents' mean rank) is enough for pipeline-shaped
    # graphs; Python's stable sort keeps the added order among equals.
    for layer in layers[1:]:
        key = {n: sum(rank[p] for p in dag[n].parents) / len(dag[n].parents) for n in layer}
        layer.sort(key=key.__getitem__)
        for i, name in enumerate(layer):
            rank[name] = (i + 0.5) / len(layer)
    return layers


def _layout(dag: DAG) -> _Layout:
    layers = _order_layers(dag)
    widest = max(len(layer) for layer in layers)
    # A tall layer wraps into sub-columns of at most max_rows boxes; 2*sqrt(n) rows for n boxes
    # keeps a fan-out of 100 roughly square (20 rows x 5 columns) at these box proportions.
    max_rows = max(12, math.ceil(2 * math.sqrt(widest)))
    columns: list[list[str]] = []
    for layer in layers:
        n_sub = math.ceil(len(layer) / max_rows)
        rows = math.ceil(len(layer) / n_sub)
        columns.extend(layer[i : i + rows] for i in range(0, len(layer), rows))

    per_band = _columns_per_band([len(c) for c in columns])
    bands = [columns[i : i + per_band] for i in range(0, len(columns), per_band)]

    pos: dict[str, tuple[float, float]] = {}
    band_of: dict[str, int] = {}
    slot_of: dict[str, int] = {}
    column_tops: dict[tuple[int, int], list[float]] = {}
    band_bottom: list[float] = []
    top = 0.0
    for b, band in enumerate(bands):
        band_rows = max(len(c) for c in band)
        for slot, column in enumerate(band):
            x = EDGE_MARGIN + slot * COL_PITCH
            offset = (band_rows - len(column)) * ROW_PITCH / 2  # centre short columns
            tops = column_tops[b, slot] = []
            for row, name in enumerate(column):
                pos[name] = (x, top + offset + row * ROW_PITCH)
                band_of[name], slot_of[name] = b, slot
                tops.append(pos[name][1])
        bottom = top + band_rows * ROW_PITCH - ROW_GAP
        band_bottom.append(bottom)
        top = bottom + BAND_GAP
    width = 2 * EDGE_MARGIN + min(per_band, len(columns)) * COL_PITCH - COL_GAP
    return _Layout(pos, band_of, slot_of, column_tops, band_bottom, width, band_bottom[-1] + MARGIN)


def _shifted(layout: _Layout, dy: float) -> _Layout:
    """The same layout moved down by `dy` inches (to make room for the title and legend)."""
    return _Layout(
        pos={name: (x, y + dy) for name, (x, y) in layout.pos.items()},
        band_of=layout.band_of,
        slot_of=layout.slot_of,
        column_tops={key: [t + dy for t in tops] for key, tops in layout.column_tops.items()},
        band_bottom=[b + dy for b in layout.band_bottom],
        width=layout.width,
        height=layout.height + dy,
    )


def _columns_per_band(column_rows: list[int]) -> int:
    """How many columns go side by side before the graph wraps into another band."""
    n = len(column_rows)
    if n <= 8:
        return n
    # Take the widest band that keeps the picture no wider than about twice its height.
    for per_band in range(n, 5, -1):
        bands = [column_rows[i : i + per_band] for i in range(0, n, per_band)]
        height = sum(max(b) * ROW_PITCH + BAND_GAP for b in bands)
        if per_band * COL_PITCH <= 2.2 * height:
            return per_band
    return 6


# -- drawing --------------------------------------------------------------------------------


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


def _draw_legend(pen: _Pen, legend: list[_LegendItem], top: float) -> None:
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import FancyBboxPatch

    swatches = []
    for item in legend:
        cy = top + 0.12 + item.y
        swatches.append(
            FancyBboxPatch((item.x, cy - 0.08), _SWATCH_W, 0.16, boxstyle="round,pad=0,rounding_size=0.04")
        )
        pen.text(item.x + _SWATCH_W + 0.08, cy, item.label, LEGEND_PT, item.room, ha="left", color="#333333")
    pen.ax.add_collection(
        PatchCollection(
            swatches,
            facecolors=[STATUS_COLORS[i.status] for i in legend],
            edgecolors=[_BORDER_COLORS[i.status] for i in legend],
            linewidths=0.8 * pen.scale,
        )
    )


def _draw_edges(ax, dag: DAG, layout: _Layout, scale: float) -> None:
    from matplotlib.collections import PatchCollection, PathCollection
    from matplotlib.patches import Polygon

    head_len, head_w = 0.11, 0.09
    paths, heads = [], []
    for node in dag:
        cx, cy = layout.pos[node.name]
        end = (cx - head_len, cy + BOX_H / 2)
        for parent in node.parents:
            px, py = layout.pos[parent]
            start = (px + BOX_W, py + BOX_H / 2)
            if layout.band_of[parent] == layout.band_of[node.name]:
                paths.append(_same_band_edge(layout, parent, node.name, start, end))
            else:
                # To a later band: out into the column gap, down to the channel under the
                # parent's band, across, and down the gap left of the child. Column gaps line
                # up in every band, so this never crosses a box.
                channel = layout.band_bottom[layout.band_of[parent]] + BAND_GAP / 2
                gx0, gx1 = start[0] + COL_GAP / 2, cx - COL_GAP / 2
                corners = [start, (gx0, start[1]), (gx0, channel), (gx1, channel), (gx1, end[1]), end]
                paths.append(_rounded(corners, 0.12))
            heads.append(
                Polygon(
                    [
                        (cx - head_len, cy + BOX_H / 2 - head_w / 2),
                        (cx, cy + BOX_H / 2),
                        (cx - head_len, cy + BOX_H / 2 + head_w / 2),
                    ],
                    closed=True,
                )
            )
    if not paths:
        return
    # One collection for all edges and one for all arrowheads: a 100-node graph draws in a
    # few milliseconds, where one annotate() per edge takes most of a second.
    ax.add_collection(
        PathCollection(paths, facecolors="none", edgecolors="#8a8a8a", linewidths=1.0 * scale, zorder=1)
    )
    ax.add_collection(PatchCollection(heads, facecolors="#6f6f6f", edgecolors="none", zorder=1))


def _same_band_edge(layout: _Layout, parent: str, child: str, start, end):
    """S-curves from column to column; across each column in between, along a gap between boxes.

    Without the detour a long edge (or one into the second sub-column of a wide layer) would
    run hidden under unrelated boxes and seem to start from one of them.
    """
    from matplotlib.path import Path as MPath

    band = layout.band_of[child]
    verts, codes = [start], [MPath.MOVETO]
    x, y = start
    for slot in range(layout.slot_of[parent] + 1, layout.slot_of[child]):
        left = EDGE_MARGIN + slot * COL_PITCH
        # Head for the target in a straight line, then step aside to the nearest gap.
        want = y + (end[1] - y) * (left - x) / (end[0] - x)
        gap_y = _free_y(layout.column_tops[band, slot], want)
        _s_curve(verts, codes, (x, y), (left, gap_y))
        verts.append((left + BOX_W, gap_y))
        codes.append(MPath.LINETO)
        x, y = left + BOX_W, gap_y
    _s_curve(verts, codes, (x, y), end)
    return MPath(verts, codes)


def _s_curve(verts: list, codes: list, a: tuple[float, float], b: tuple[float, float]) -> None:
    """Append a cubic from a to b that leaves and arrives horizontally (so arrowheads line up)."""
    from matplotlib.path import Path as MPath

    d = max(COL_GAP * 0.45, (b[0] - a[0]) * 0.4)
    verts += [(a[0] + d, a[1]), (b[0] - d, b[1]), b]
    codes += [MPath.CURVE4] * 3


def _free_y(tops: list[float], want: float) -> float:
    """`want` if it clears every box in a column, else the middle of the nearest gap.

    Above the top box or below the bottom one there is no neighbour, so the edge keeps a wider
    berth there than between two boxes.
    """
    clear = ROW_GAP / 4
    for i, t in enumerate(tops):
        if t - clear < want < t + BOX_H + clear:
            above = t - (ROW_GAP / 2 if i > 0 else 0.2)
            below = t + BOX_H + (ROW_GAP / 2 if i < len(tops) - 1 else 0.2)
            return above if want - above < below - want else below
    return want


def _rounded(points: list[tuple[float, float]], radius: float):
    """A polyline through `points` with its corners rounded (quadratic curves)."""
    from matplotlib.path import Path as MPath

    verts, codes = [points[0]], [MPath.MOVETO]
    for prev, corner, nxt in zip(points, points[1:], points[2:], strict=False):
        r_in = min(radius, math.dist(prev, corner) / 2)
        r_out = min(radius, math.dist(corner, nxt) / 2)
        verts += [_toward(corner, prev, r_in), corner, _toward(corner, nxt, r_out)]
        codes += [MPath.LINETO, MPath.CURVE3, MPath.CURVE3]
    verts.append(points[-1])
    codes.append(MPath.LINETO)
    return MPath(verts, codes)


def _toward(a: tuple[float, float], b: tuple[float, float], dist: float) -> tuple[float, float]:
    length = math.dist(a, b)
    if length == 0:
        return a
    return (a[0] + (b[0] - a[0]) * dist / length, a[1] + (b[1] - a[1]) * dist / length)


def _draw_boxes(ax, pen: _Pen, dag: DAG, layout: _Layout, scale: float) -> None:
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import FancyBboxPatch

    boxes, faces, borders, widths, styles = [], [], [], [], []
    room = BOX_W - 2 * TEXT_PAD
    for node in dag:
        x, y = layout.pos[node.name]
        boxes.append(FancyBboxPatch((x, y), BOX_W, BOX_H, boxstyle="round,pad=0,rounding_size=0.08"))
        faces.append(STATUS_COLORS[node.status])
        borders.append(_BORDER_COLORS[node.status])
        widths.append((2.0 if node.status == "running" else 1.0) * scale)
        styles.append((0, (3, 2)) if node.status in _DASHED else "solid")

        ink = _ink_for(STATUS_COLORS[node.status])
        detail = _detail(node)
        cx, cy = x + BOX_W / 2, y + BOX_H / 2
        if detail:
            pen.text(cx, cy - 0.09, node.name, NAME_PT, room, weight="bold", color=ink)
            pen.text(cx, cy + 0.12, detail, DETAIL_PT, room, color=ink)
        else:
            pen.text(cx, cy, node.name, NAME_PT, room, weight="bold", color=ink)
    ax.add_collection(
        PatchCollection(
            boxes, facecolors=faces, edgecolors=borders, linewidths=widths, linestyles=styles, zorder=2
        )
    )


def _detail(node) -> str:
    """The line under a step's name: its status when not the norm, and its duration if known."""
    parts = []
    if node.status in _SAY_STATUS:
        parts.append(node.status)
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
