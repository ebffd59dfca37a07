"""Where a pipeline DAG's boxes and edges go: layered left to right, one rank per layer.

The ordering within each layer (crossing reduction) and the positions along it come from grandalf's
Sugiyama layout, the layered layout Graphviz's `dot` made standard: each layer is one rank, long
edges pass through placeholder slots in the layers they cross, and a barycentre sweep with
adjacent swaps keeps crossings few. This module adds what a pipeline picture needs on top:

- a layer too tall for a page (a fan-out of hundreds) folds into a grid of sub-columns on a
  shaded panel, still one rank; edges reach its boxes along the gaps between rows and columns;
- a graph too long for a page (a chain of hundreds) wraps into bands stacked top to bottom;
  an edge to a later band runs down a column gap, along the channel under its band, and down.

Pure geometry in nominal inches, y pointing down; no matplotlib. grandalf is imported only when a
layout is computed (`_sugiyama`), so importing this module costs nothing. `layout_dag` runs the
stages in order; each hands the next a small frozen record of what it decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from labpipe.pipeline.dag import DAG

BOX_W, BOX_H = 2.0, 0.52
ERROR_BOX_H = 0.74  # a failed or aborted box has a third line: its error
COL_GAP, ROW_GAP = 0.8, 0.2
BAND_GAP = 0.55  # between bands of a wrapped graph: the channel edges take to the next band
COMPONENT_GAP = 0.5  # between unconnected parts of the graph
MARGIN = 0.3
EDGE_MARGIN = MARGIN + COL_GAP / 2  # left/right: room for edges that turn down to another band
FOLD_ROWS = 40  # a layer of more boxes than this folds into sub-columns
FOLD_GAP = 0.3  # between the sub-columns of a folded layer
PANEL_PAD = 0.25  # a folded layer's panel around its boxes (room for edges into column 0)
PANEL_LABEL_H = 0.3  # above a panel: "layer 2 · 300 steps in 8 columns"
LANE_OFFSET = 0.04  # in a folded panel's row gap: edges in run above the middle, edges out below


@dataclass(frozen=True)
class Panel:
    """A folded layer's shaded background: its rank, box and how it folded."""

    rank: int
    x: float
    y: float
    w: float
    h: float
    steps: int
    columns: int


@dataclass(frozen=True)
class Segment:
    """One piece of an edge: "curve" (an S-curve leaving and arriving horizontally) or "line"."""

    kind: str
    a: tuple[float, float]
    b: tuple[float, float]


@dataclass
class Layout:
    """Boxes (top-left corner and height, nominal inches), edges as segments, and the drawing's size.

    rank_of maps each step to its layer's index; every box of one rank has the same x unless
    the rank is folded (then its boxes share one panel). Every (parent, child) pair has its
    segments; pairs drawn as one edge to or from a folded panel share one list.
    """

    pos: dict[str, tuple[float, float]]
    height_of: dict[str, float]
    rank_of: dict[str, int]
    edges: dict[tuple[str, str], list[Segment]]
    panels: list[Panel] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0

    def shifted(self, dy: float) -> Layout:
        """The same layout moved down by `dy` inches (room for a title and legend above it)."""

        def move(p: tuple[float, float]) -> tuple[float, float]:
            return (p[0], p[1] + dy)

        moved: dict[int, list[Segment]] = {}  # shared lists stay shared
        for segs in self.edges.values():
            if id(segs) not in moved:
                moved[id(segs)] = [Segment(s.kind, move(s.a), move(s.b)) for s in segs]
        return Layout(
            pos={n: move(p) for n, p in self.pos.items()},
            height_of=self.height_of,
            rank_of=self.rank_of,
            edges={e: moved[id(segs)] for e, segs in self.edges.items()},
            panels=[Panel(p.rank, p.x, p.y + dy, p.w, p.h, p.steps, p.columns) for p in self.panels],
            width=self.width,
            height=self.height + dy,
        )


def box_height(dag: DAG, name: str) -> float:
    """A step's box height: taller for a failed or aborted step, whose box shows its error."""
    node = dag[name]
    return ERROR_BOX_H if node.status in ("failed", "aborted") and error_line(node.error) else BOX_H


def error_line(error: str | None) -> str:
    """The first non-blank line of a step's error, stripped ("" if none)."""
    for line in (error or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def crossings(layout: Layout) -> int:
    """How many pairs of edge curves cross between two neighbouring ranks.

    Curves sharing an end (a fan-out's edges all leave one box) do not count; the straight runs
    inside a folded panel or down a band's channel are shared lanes, not crossings.
    """
    gaps: dict[tuple[float, float], list[tuple[float, float]]] = {}
    for segments in {id(s): s for s in layout.edges.values()}.values():
        for s in segments:
            if s.kind == "curve":
                gaps.setdefault((round(s.a[0], 6), round(s.b[0], 6)), []).append((s.a[1], s.b[1]))
    count = 0
    for ends in gaps.values():
        ends.sort()
        for i, (a0, b0) in enumerate(ends):
            for a1, b1 in ends[i + 1 :]:
                if a1 > a0 + 1e-9 and b1 < b0 - 1e-9:
                    count += 1
    return count


def layout_dag(dag: DAG) -> Layout:
    """Place every step of a non-empty DAG and route every edge.

    In stages, each its own function: the steps' ranks (`_rank`), their order along each layer
    (`_sugiyama`), folded layers' grids (`_fold_grid`), the ranks' columns and bands (`_columns`),
    the bands stacked top to bottom (`_stack_bands`), the boxes and panels (`_place`), and the
    edges routed between them (`_route_edges`).
    """
    ranks = _rank(dag)
    along, dummies = _sugiyama(dag, ranks.rank_of, ranks.height_of, ranks.folds)
    grid = _fold_grid(ranks, along)
    columns = _columns(ranks)
    bands = _stack_bands(ranks, along, dummies, grid, columns)
    placed = _place(ranks, dummies, grid, columns, bands)
    edges = _route_edges(dag, placed)
    return Layout(placed.pos, ranks.height_of, ranks.rank_of, edges, placed.panels, columns.width, bands.height)


@dataclass(frozen=True)
class _Ranks:
    """The layers (steps in the order they were added), each step's rank and box height, and the
    ranks that fold: {rank: how many sub-columns}."""

    layers: list[list[str]]
    rank_of: dict[str, int]
    height_of: dict[str, float]
    folds: dict[int, int]


def _rank(dag: DAG) -> _Ranks:
    """Each step's rank (its layer: the longest path from a root), box height, and which layers fold."""
    layers = dag.layers()
    rank_of = {name: r for r, layer in enumerate(layers) for name in layer}
    height_of = {node.name: box_height(dag, node.name) for node in dag}
    folds = {r: math.ceil(len(layer) / FOLD_ROWS) for r, layer in enumerate(layers) if len(layer) > FOLD_ROWS}
    return _Ranks(layers, rank_of, height_of, folds)


@dataclass(frozen=True)
class _Grid:
    """Folded layers' grids: each folded step's (row, column); per folded rank, its grid's top
    (before bands are stacked), row pitch and number of rows."""

    cell: dict[str, tuple[int, int]]
    top: dict[int, float]
    pitch: dict[int, float]
    rows: dict[int, int]


def _fold_grid(ranks: _Ranks, along: dict[str, float]) -> _Grid:
    """Lay each folded layer out row by row across its sub-columns, in grandalf's order.

    Each row is as tall as its layer's tallest box, so rows line up and their gaps run straight
    across the panel; the grid is centred where grandalf put the layer.
    """
    cell: dict[str, tuple[int, int]] = {}
    top: dict[int, float] = {}
    pitch: dict[int, float] = {}
    rows: dict[int, int] = {}
    for r, k in ranks.folds.items():
        names = sorted(ranks.layers[r], key=along.__getitem__)
        pitch[r] = max(ranks.height_of[n] for n in names) + ROW_GAP
        rows[r] = math.ceil(len(names) / k)
        for i, name in enumerate(names):
            cell[name] = divmod(i, k)
        mid = (along[names[0]] + along[names[-1]]) / 2
        top[r] = mid - rows[r] * pitch[r] / 2
    return _Grid(cell, top, pitch, rows)


@dataclass(frozen=True)
class _Columns:
    """Where the ranks go across: each rank's width, how many ranks a band holds, and the slots
    (one per position in a band) with their widths and left edges."""

    rank_w: list[float]
    per_band: int
    slot_w: list[float]
    slot_x: list[float]

    def band(self, r: int) -> int:
        """The band rank `r` is in (0 at the top)."""
        return r // self.per_band

    def left(self, r: int) -> float:
        """Rank `r`'s left edge."""
        return self.slot_x[r % self.per_band]

    def right(self, r: int) -> float:
        """Rank `r`'s right edge."""
        return self.left(r) + self.rank_w[r]

    @property
    def width(self) -> float:
        """The drawing's width: the slots, the gaps between them and the margins for band edges."""
        return 2 * EDGE_MARGIN + sum(self.slot_w) + (len(self.slot_w) - 1) * COL_GAP


def _columns(ranks: _Ranks) -> _Columns:
    """Each rank's width (a folded one's panel), how many ranks go side by side before the graph
    wraps into another band, and each slot's x: as wide as the widest rank it holds in any band."""
    layers, folds = ranks.layers, ranks.folds
    rank_w = [BOX_W if r not in folds else 2 * PANEL_PAD + folds[r] * (BOX_W + FOLD_GAP) - FOLD_GAP for r in range(len(layers))]
    per_band = _ranks_per_band(layers, rank_w, ranks.height_of)
    n_slots = min(per_band, len(layers))
    slot_w = [max(rank_w[r] for r in range(s, len(layers), per_band)) for s in range(n_slots)]
    slot_x = [EDGE_MARGIN + sum(slot_w[:s]) + s * COL_GAP for s in range(n_slots)]
    return _Columns(rank_w, per_band, slot_w, slot_x)


@dataclass(frozen=True)
class _Bands:
    """Where things go down: each step's box centre before its band is moved, each band's shift
    down the page and bottom edge (after the shift), and the drawing's height."""

    centre: dict[str, float]
    shift: list[float]
    bottom: list[float]
    height: float


def _stack_bands(
    ranks: _Ranks,
    along: dict[str, float],
    dummies: dict[tuple[str, str], dict[int, float]],
    grid: _Grid,
    columns: _Columns,
) -> _Bands:
    """Each step's centre along its layer (its grid row's, when folded), then each band's extent
    (boxes, panels with their labels, long edges' slots) and its shift to sit under the one before."""
    rank_of, folds, band = ranks.rank_of, ranks.folds, columns.band
    centre: dict[str, float] = {}
    for name in rank_of:
        r = rank_of[name]
        if r in folds:
            row, _ = grid.cell[name]
            centre[name] = grid.top[r] + row * grid.pitch[r] + grid.pitch[r] / 2
        else:
            centre[name] = along[name]
    n_bands = band(len(ranks.layers) - 1) + 1
    lo = [math.inf] * n_bands
    hi = [-math.inf] * n_bands
    for name, y in centre.items():
        b = band(rank_of[name])
        half = ranks.height_of[name] / 2
        extra = PANEL_LABEL_H + PANEL_PAD if rank_of[name] in folds else 0.0
        lo[b] = min(lo[b], y - half - extra)
        hi[b] = max(hi[b], y + half + (PANEL_PAD if rank_of[name] in folds else 0.0))
    for (parent, child), ys in dummies.items():
        if band(rank_of[parent]) == band(rank_of[child]):
            b = band(rank_of[parent])
            for y in ys.values():
                lo[b], hi[b] = min(lo[b], y - ROW_GAP), max(hi[b], y + ROW_GAP)
    shift, top = [], MARGIN
    for b in range(n_bands):
        shift.append(top - lo[b])
        top += hi[b] - lo[b] + BAND_GAP
    height = top - BAND_GAP + MARGIN
    bottom = [hi[b] + shift[b] for b in range(n_bands)]
    return _Bands(centre, shift, bottom, height)


@dataclass(frozen=True)
class _Placed:
    """Everything placed: boxes (top-left corners) and panels, with what routing asks of them."""

    ranks: _Ranks
    dummies: dict[tuple[str, str], dict[int, float]]
    grid: _Grid
    columns: _Columns
    bands: _Bands
    pos: dict[str, tuple[float, float]]
    panels: list[Panel]

    def y_of(self, name: str) -> float:
        """A step's box centre on the page."""
        return self.bands.centre[name] + self.bands.shift[self.columns.band(self.ranks.rank_of[name])]

    def grid_top(self, r: int) -> float:
        """Folded rank `r`'s first row's top on the page."""
        return self.grid.top[r] + self.bands.shift[self.columns.band(r)]

    def row_gap_near(self, r: int, y: float) -> float:
        """The nearest y in rank r's panel that runs between rows (or beside the panel)."""
        top_y = self.grid_top(r)
        pitch = self.grid.pitch[r]
        i = round((y - top_y) / pitch)
        return top_y + min(max(i, 0), self.grid.rows[r]) * pitch

    def lane(self, name: str, below: bool) -> float:
        """The row gap above (below) a folded step's row; edges in and edges out keep to their own side."""
        r = self.ranks.rank_of[name]
        row = self.grid.cell[name][0] + (1 if below else 0)
        return self.grid_top(r) + row * self.grid.pitch[r] + (LANE_OFFSET if below else -LANE_OFFSET)

    def on_panel(self, r: int, y: float) -> float:
        """`y` kept inside folded rank r's panel, clear of its rounded corners."""
        p = next(p for p in self.panels if p.rank == r)
        return min(max(y, p.y + 2 * PANEL_PAD), p.y + p.h - 2 * PANEL_PAD)


def _place(
    ranks: _Ranks,
    dummies: dict[tuple[str, str], dict[int, float]],
    grid: _Grid,
    columns: _Columns,
    bands: _Bands,
) -> _Placed:
    """Every box's top-left corner (a folded step's in its grid cell) and every folded layer's panel."""
    placed = _Placed(ranks, dummies, grid, columns, bands, {}, [])
    for name, r in ranks.rank_of.items():
        x = columns.left(r) + (PANEL_PAD + grid.cell[name][1] * (BOX_W + FOLD_GAP) if r in ranks.folds else 0.0)
        placed.pos[name] = (x, placed.y_of(name) - ranks.height_of[name] / 2)
    for r, k in ranks.folds.items():
        y0 = placed.grid_top(r)
        placed.panels.append(Panel(r, columns.left(r), y0 - PANEL_PAD, columns.rank_w[r],
                                   grid.rows[r] * grid.pitch[r] - ROW_GAP + 2 * PANEL_PAD, len(ranks.layers[r]), k))
    return placed


def _route_edges(dag: DAG, placed: _Placed) -> dict[tuple[str, str], list[Segment]]:
    """Every (parent, child) pair's segments, bundled where a folded layer makes many edges one.

    A folded layer whose steps all have the same parents (a fan-out) gets one edge from each
    parent to its panel, and a step that needs every step of a folded layer (a fan-in) one edge
    from the panel: hundreds of edges between the same two places say no more than one does.
    """
    layers, rank_of, folds = placed.ranks.layers, placed.ranks.rank_of, placed.ranks.folds
    fanned_out = {r for r in folds if len({frozenset(dag[n].parents) for n in layers[r]}) == 1 and dag[layers[r][0]].parents}
    edges: dict[tuple[str, str], list[Segment]] = {}
    shared: dict[tuple, list[Segment]] = {}
    for node in dag:
        child = node.name
        for parent in node.parents:
            rp = rank_of[parent]
            from_panel = rp in folds and set(layers[rp]) <= set(node.parents)
            to_panel = rank_of[child] in fanned_out
            key = (("panel", rp) if from_panel else parent, ("panel", rank_of[child]) if to_panel else child)
            if key not in shared:
                shared[key] = _route(placed, parent, child, from_panel, to_panel)
            edges[parent, child] = shared[key]
    return edges


def _route(placed: _Placed, parent: str, child: str, from_panel: bool, to_panel: bool) -> list[Segment]:
    """One edge's segments: out of the parent (or its panel), through the layers it crosses (or
    down to a later band along the channel under its own), into the child (or its panel)."""
    p, cols, folds = placed, placed.columns, placed.ranks.folds
    pos, height_of = placed.pos, placed.ranks.height_of
    rp, rc = p.ranks.rank_of[parent], p.ranks.rank_of[child]
    cx, cy = pos[child][0], p.y_of(child)
    segs: list[Segment] = []
    if from_panel:  # from the panel's right side, level with the child if it can
        at = (cols.right(rp), p.on_panel(rp, cy))
    elif rp in folds:  # down out of the box, along the row gap under it, out of the panel
        px = pos[parent][0] + BOX_W / 2
        at = (px, pos[parent][1] + height_of[parent])
        at = _line(segs, at, (px, p.lane(parent, below=True)))
        at = _line(segs, at, (cols.right(rp), at[1]))
    else:
        at = (pos[parent][0] + BOX_W, p.y_of(parent))
    if to_panel:
        entry = p.on_panel(rc, at[1] if cols.band(rp) == cols.band(rc) and rc == rp + 1 else cy)
    elif rc in folds:
        entry = p.lane(child, below=False)
    else:
        entry = cy
    if cols.band(rp) == cols.band(rc):
        for r in range(rp + 1, rc):
            y = p.dummies[parent, child][r] + p.bands.shift[cols.band(r)]
            if r in folds:
                y = p.row_gap_near(r, y)
            at = _curve(segs, at, (cols.left(r), y))
            at = _line(segs, at, (cols.right(r), y))
        if at[0] < cols.left(rc) - 1e-9:
            at = _curve(segs, at, (cols.left(rc), entry))
        else:
            at = _line(segs, at, (cols.left(rc), entry))
    else:  # down the gap right of the parent's rank, along the channel, down left of the child's
        gx0, gx1 = cols.right(rp) + COL_GAP / 2, cols.left(rc) - COL_GAP / 2
        channel = p.bands.bottom[cols.band(rp)] + BAND_GAP / 2
        for point in ((gx0, at[1]), (gx0, channel), (gx1, channel), (gx1, entry), (cols.left(rc), entry)):
            at = _line(segs, at, point)
    if rc in folds and not to_panel:  # along the row gap above the box, down into its top
        bx = cx + BOX_W / 2
        at = _line(segs, at, (bx, entry))
        _line(segs, at, (bx, pos[child][1]))
    return segs


def _line(segs: list[Segment], a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    if a != b:
        segs.append(Segment("line", a, b))
    return b


def _curve(segs: list[Segment], a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    segs.append(Segment("curve", a, b))
    return b


def _sugiyama(dag: DAG, rank_of: dict[str, int], height_of: dict[str, float], folds: dict[int, int]):
    """grandalf's layout: each step's position along its layer (box centre), and each long edge's
    positions in the layers it crosses ({(parent, child): {rank: y}}).

    grandalf lays layers top to bottom; we draw them left to right, so its x is our y and a
    vertex's "width" is our box height plus the gap. A folded layer's boxes get 1/k of that, so the
    layer takes about the height its grid will, and its neighbours line up with it.
    """
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    class View:  # what grandalf reads and writes on each vertex
        def __init__(self, w: float, h: float) -> None:
            self.w, self.h, self.xy = w, h, (0.0, 0.0)

    vertices = {}
    for name in dag.names():
        pitch = height_of[name] + ROW_GAP
        fold = folds.get(rank_of[name], 1)
        vertices[name] = Vertex(name)
        vertices[name].view = View(pitch / fold, BOX_W)
    edges = {}
    for node in dag:
        for parent in node.parents:
            edges[parent, node.name] = Edge(vertices[parent], vertices[node.name])
    graph = Graph(list(vertices.values()), list(edges.values()))

    along: dict[str, float] = {}
    dummies: dict[tuple[str, str], dict[int, float]] = {}
    offset = 0.0
    # Components in the order their first step was added, stacked top to bottom.
    order = {name: i for i, name in enumerate(dag.names())}
    components = sorted(graph.C, key=lambda c: min(order[v.data] for v in c.sV))
    for component in components:
        sugiyama = SugiyamaLayout(component)
        sugiyama.xspace = 0.0  # the gaps are inside each vertex's width
        sugiyama.dw, sugiyama.dh = (BOX_H + ROW_GAP) * 0.5, BOX_W  # a long edge's slot in a layer it crosses
        sugiyama.init_all(roots=[v for v in component.sV if not v.e_in()], inverted_edges=[])
        sugiyama.draw(3)
        lo = min(v.view.xy[0] - v.view.w / 2 for layer in sugiyama.layers for v in layer)
        hi = max(v.view.xy[0] + v.view.w / 2 for layer in sugiyama.layers for v in layer)
        for v in component.sV:
            along[v.data] = v.view.xy[0] - lo + offset
        for edge, ctrl in sugiyama.ctrls.items():
            key = (edge.v[0].data, edge.v[1].data)
            # grandalf's ranks are ours: both are the longest path from a root
            dummies[key] = {r: ctrl[r].view.xy[0] - lo + offset for r in ctrl if ctrl[r] not in edge.v}
        offset += hi - lo + COMPONENT_GAP
    return along, dummies


def _ranks_per_band(layers: list[list[str]], rank_w: list[float], height_of: dict[str, float]) -> int:
    """How many ranks go side by side before the graph wraps into another band.

    The widest band that keeps the picture no wider than about twice its height; a graph of few
    ranks never wraps.
    """
    n = len(layers)
    if n <= 8:
        return n
    tall = [sum(height_of[name] + ROW_GAP for name in layer) / max(1, math.ceil(len(layer) / FOLD_ROWS))
            for layer in layers]
    for per_band in range(n, 5, -1):
        starts = range(0, n, per_band)
        height = sum(max(tall[s : s + per_band]) + BAND_GAP for s in starts)
        width = max(sum(rank_w[s : s + per_band]) + per_band * COL_GAP for s in starts)
        if width <= 2.2 * height:
            return per_band
    return 6
