"""Where a pipeline DAG's boxes and edges go: layered left to right, one rank per layer.

The ordering within each layer (crossing reduction) and the positions along it come from grandalf's
Sugiyama layout, the layered layout Graphviz's `dot` made standard: each layer is one rank, long
edges pass through placeholder slots in the layers they cross, and a barycentre sweep with
adjacent swaps keeps crossings few. This module adds what a pipeline picture needs on top:

- a layer too tall for a page (a fan-out of hundreds) folds into a grid of sub-columns on a
  shaded panel, still one rank; edges reach its boxes along the gaps between rows and columns;
- a graph too long for a page (a chain of hundreds) wraps into bands stacked top to bottom;
  an edge to a later band runs down a column gap, along the channel under its band, and down.

Pure geometry in nominal inches, y pointing down; no matplotlib. grandalf is imported inside
`layout_dag`, so importing this module costs nothing.
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
    """Place every step of a non-empty DAG and route every edge."""
    layers = dag.layers()
    rank_of = {name: r for r, layer in enumerate(layers) for name in layer}
    height_of = {node.name: box_height(dag, node.name) for node in dag}
    folds = {r: math.ceil(len(layer) / FOLD_ROWS) for r, layer in enumerate(layers) if len(layer) > FOLD_ROWS}
    along, dummies = _sugiyama(dag, rank_of, height_of, folds)

    # Folded layers: grandalf's order, row by row across the sub-columns; each row as tall as its
    # layer's tallest box so rows line up and their gaps run straight across the panel.
    grid: dict[str, tuple[int, int]] = {}  # name -> (row, column)
    fold_top: dict[int, float] = {}
    fold_pitch: dict[int, float] = {}
    for r, k in folds.items():
        names = sorted(layers[r], key=along.__getitem__)
        pitch = max(height_of[n] for n in names) + ROW_GAP
        rows = math.ceil(len(names) / k)
        for i, name in enumerate(names):
            grid[name] = divmod(i, k)
        mid = (along[names[0]] + along[names[-1]]) / 2
        fold_top[r] = mid - rows * pitch / 2
        fold_pitch[r] = pitch

    rank_w = [BOX_W if r not in folds else 2 * PANEL_PAD + folds[r] * (BOX_W + FOLD_GAP) - FOLD_GAP for r in range(len(layers))]
    per_band = _ranks_per_band(layers, rank_w, height_of)
    n_slots = min(per_band, len(layers))
    slot_w = [max(rank_w[r] for r in range(s, len(layers), per_band)) for s in range(n_slots)]
    slot_x = [EDGE_MARGIN + sum(slot_w[:s]) + s * COL_GAP for s in range(n_slots)]

    def band(r: int) -> int:
        return r // per_band

    def left(r: int) -> float:
        return slot_x[r % per_band]

    def right(r: int) -> float:
        return left(r) + rank_w[r]

    # Unshifted y (centre of each box) per step, then each band moved to sit under the one before.
    centre: dict[str, float] = {}
    for name in rank_of:
        r = rank_of[name]
        if r in folds:
            row, _ = grid[name]
            centre[name] = fold_top[r] + row * fold_pitch[r] + fold_pitch[r] / 2
        else:
            centre[name] = along[name]
    n_bands = band(len(layers) - 1) + 1
    lo = [math.inf] * n_bands
    hi = [-math.inf] * n_bands
    for name, y in centre.items():
        b = band(rank_of[name])
        half = height_of[name] / 2
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
    band_bottom = [hi[b] + shift[b] for b in range(n_bands)]

    def y_of(name: str) -> float:
        return centre[name] + shift[band(rank_of[name])]

    pos: dict[str, tuple[float, float]] = {}
    for name, r in rank_of.items():
        x = left(r) + (PANEL_PAD + grid[name][1] * (BOX_W + FOLD_GAP) if r in folds else 0.0)
        pos[name] = (x, y_of(name) - height_of[name] / 2)

    panels = []
    for r, k in folds.items():
        rows = math.ceil(len(layers[r]) / k)
        y0 = fold_top[r] + shift[band(r)]
        panels.append(Panel(r, left(r), y0 - PANEL_PAD, rank_w[r], rows * fold_pitch[r] - ROW_GAP + 2 * PANEL_PAD,
                            len(layers[r]), k))

    def row_gap_near(r: int, y: float) -> float:
        """The nearest y in rank r's panel that runs between rows (or beside the panel)."""
        top_y = fold_top[r] + shift[band(r)]
        pitch = fold_pitch[r]
        rows = math.ceil(len(layers[r]) / folds[r])
        i = round((y - top_y) / pitch)
        return top_y + min(max(i, 0), rows) * pitch

    def lane(name: str, below: bool) -> float:
        """The row gap above (below) a folded step's row; edges in and edges out keep to their own side."""
        r = rank_of[name]
        row = grid[name][0] + (1 if below else 0)
        return fold_top[r] + shift[band(r)] + row * fold_pitch[r] + (LANE_OFFSET if below else -LANE_OFFSET)

    panel_of = {p.rank: p for p in panels}

    def on_panel(r: int, y: float) -> float:
        p = panel_of[r]
        return min(max(y, p.y + 2 * PANEL_PAD), p.y + p.h - 2 * PANEL_PAD)

    def route(parent: str, child: str, from_panel: bool, to_panel: bool) -> list[Segment]:
        rp, rc = rank_of[parent], rank_of[child]
        cx, cy = pos[child][0], y_of(child)
        segs: list[Segment] = []
        if from_panel:  # from the panel's right side, level with the child if it can
            at = (right(rp), on_panel(rp, cy))
        elif rp in folds:  # down out of the box, along the row gap under it, out of the panel
            px = pos[parent][0] + BOX_W / 2
            at = (px, pos[parent][1] + height_of[parent])
            at = _line(segs, at, (px, lane(parent, below=True)))
            at = _line(segs, at, (right(rp), at[1]))
        else:
            at = (pos[parent][0] + BOX_W, y_of(parent))
        if to_panel:
            entry = on_panel(rc, at[1] if band(rp) == band(rc) and rc == rp + 1 else cy)
        elif rc in folds:
            entry = lane(child, below=False)
        else:
            entry = cy
        if band(rp) == band(rc):
            for r in range(rp + 1, rc):
                y = dummies[parent, child][r] + shift[band(r)]
                if r in folds:
                    y = row_gap_near(r, y)
                at = _curve(segs, at, (left(r), y))
                at = _line(segs, at, (right(r), y))
            at = _curve(segs, at, (left(rc), entry)) if at[0] < left(rc) - 1e-9 else _line(segs, at, (left(rc), entry))
        else:  # down the gap right of the parent's rank, along the channel, down left of the child's
            gx0, gx1 = right(rp) + COL_GAP / 2, left(rc) - COL_GAP / 2
            channel = band_bottom[band(rp)] + BAND_GAP / 2
            for point in ((gx0, at[1]), (gx0, channel), (gx1, channel), (gx1, entry), (left(rc), entry)):
                at = _line(segs, at, point)
        if rc in folds and not to_panel:  # along the row gap above the box, down into its top
            bx = cx + BOX_W / 2
            at = _line(segs, at, (bx, entry))
            _line(segs, at, (bx, pos[child][1]))
        return segs

    # A folded layer whose steps all have the same parents (a fan-out) gets one edge from each
    # parent to its panel, and a step that needs every step of a folded layer (a fan-in) one edge
    # from the panel: hundreds of edges between the same two places say no more than one does.
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
                shared[key] = route(parent, child, from_panel, to_panel)
            edges[parent, child] = shared[key]
    width = 2 * EDGE_MARGIN + sum(slot_w) + (n_slots - 1) * COL_GAP
    return Layout(pos, height_of, rank_of, edges, panels, width, height)


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
