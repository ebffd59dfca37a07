"""Results without writing Python: `labpipe scalars`, `labpipe plots`, `labpipe compare`.

click commands; labpipe/cli.py registers them on the `labpipe` group. What they read is what the
Logger stored (scalars as rows, charts as JSON documents, images, tables and media as blobs); the
drawing is `labpipe.figures` (matplotlib, imported only when something is drawn).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from .cli_io import cannot_write, emit, output_path, table
from .errors import LabpipeError
from .store.db import require_store

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _load(task_id: str):
    from .task import Task

    require_store()
    return Task.get_task(task_id=task_id)


def _pick(scalars: dict, metrics: tuple[str, ...], task) -> dict:
    """Only the curves named TITLE or TITLE/SERIES in `metrics` (all of them when none are named)."""
    if not metrics:
        return scalars
    out: dict = {}
    for metric in metrics:
        title, _, series = metric.partition("/")
        if title not in scalars or (series and series not in scalars[title]):
            have = ", ".join(f"{t}/{s}" for t in scalars for s in scalars[t]) or "none"
            raise LabpipeError(f"task {task.id} ({task.name}) has no scalar {metric!r}; it has: {have}")
        chosen = {series: scalars[title][series]} if series else scalars[title]
        out.setdefault(title, {}).update(chosen)
    return out


def _write(out: Path, data: bytes) -> None:
    """Write a new file or replace one, privately; never through a link someone left at that name."""
    from . import contained

    try:
        contained.replace_file(out, data)
    except OSError as exc:
        raise cannot_write(out, exc) from None


@click.command("scalars")
@click.argument("task_id")
@click.option("--metric", "-m", "metrics", multiple=True, metavar="TITLE[/SERIES]", help="Only these curves (repeatable).")
@click.option("-o", "--output", default=None, help="Draw the curves to this PNG (or into this folder as scalars.png).")
@click.option("--json", "as_json", is_flag=True, help="Print the curves as JSON: {title: {series: {x: [...], y: [...]}}}.")
def scalars_command(task_id: str, metrics: tuple[str, ...], output: str | None, as_json: bool) -> None:
    """A task's reported scalar curves (a pipeline's include the metrics it monitors): summary, JSON or PNG."""
    task = _load(task_id)
    scalars = task.get_reported_scalars()
    if not scalars:
        raise LabpipeError(f"task {task.id} ({task.name}) has reported no scalars")
    scalars = _pick(scalars, metrics, task)
    if output:
        if output != "-" and not output.lower().endswith(".png") and not Path(output).expanduser().is_dir():
            raise LabpipeError(f"cannot write {output}: scalars are drawn as PNG; give a .png file name or a folder")
        from .figures import draw_scalars

        out, _typed = output_path(output, "scalars.png")
        _write(out, draw_scalars([(task.id[:8], scalars)]))
        click.echo(f"wrote {out}")
        return
    rows = [{"metric": f"{title}/{series}", "points": len(c["y"]), "last": _num(c["y"][-1]),
             "min": _num(min(c["y"])), "max": _num(max(c["y"])), "last iteration": c["x"][-1]}
            for title, d in scalars.items() for series, c in d.items()]
    emit(as_json, scalars, table(rows, ["metric", "points", "last", "min", "max", "last iteration"]))


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def file_stem(*parts: Any) -> str:
    """A file name stem made of `parts` that is safe anywhere: letters, digits, '.', '_' and '-' only,
    never starting with a dot, at most 120 characters."""
    stem = "-".join(_UNSAFE.sub("_", str(p)).strip("._") or "_" for p in parts if str(p) != "")
    return stem[:120]


@click.command("plots")
@click.argument("task_id")
@click.option("-o", "--output", required=True, help="Folder to write into (made if its parent exists).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def plots_command(task_id: str, output: str, as_json: bool) -> None:
    """Write a task's reported plots as files: figures and images as PNG, charts as PNG and JSON,
    tables as CSV, media with their own extension."""
    from . import charts
    from .figures import DRAWABLE, draw_chart

    task = _load(task_id)
    plots = task.get_logger().get_plots()
    if not plots:
        raise LabpipeError(f"task {task.id} ({task.name}) has reported no plots, images, tables or media")
    folder = Path(output).expanduser()
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise LabpipeError(f"cannot write into {folder}: it is not a folder; choose a folder")
        if not folder.parent.is_dir():
            raise LabpipeError(f"cannot write into {folder}: no such folder {folder.parent}; create it first (mkdir -p {folder.parent})")
        try:
            folder.mkdir()
        except OSError as exc:
            raise cannot_write(folder, exc) from None
    written, seen = [], set()
    for plot in plots:
        stem = file_stem(plot["title"], plot["series"], plot["iteration"])
        while stem in seen:  # the same title/series/iteration reported twice: keep both
            stem += "_"
        seen.add(stem)
        files: list[tuple[str, bytes]] = []
        if plot["kind"] == "image":
            files.append((".png" if plot["data"][:4] == b"\x89PNG" else ".img", plot["data"]))
        elif plot["kind"] == "table":
            files.append((".csv", plot["data"].encode()))
        elif plot["kind"] == "chart":
            files.append((".json", charts.to_json(plot["data"])))
            if plot["data"]["type"] in DRAWABLE:
                files.append((".png", draw_chart(plot["data"])))
        else:
            files.append((_ext(plot), plot["data"]))
        for ext, data in files:
            out = folder / (stem + ext)
            _write(out, data)
            written.append({"title": plot["title"], "series": plot["series"], "iteration": plot["iteration"],
                            "kind": plot["kind"], "file": str(out)})
    emit(as_json, written, "\n".join(f"wrote {w['file']}" for w in written))


def _ext(plot: dict) -> str:
    ext = plot.get("file_extension") or ".bin"
    return ext if re.fullmatch(r"\.[A-Za-z0-9]{1,15}", ext) else ".bin"


@click.command("compare")
@click.argument("task_ids", nargs=-1, required=True, metavar="ID ID...")
@click.option("--all", "show_all", is_flag=True, help="Also list the parameters and metrics that are the same in every run.")
@click.option("-o", "--output", default=None, help="Overlay the runs' scalar curves in this PNG.")
@click.option("--json", "as_json", is_flag=True)
def compare_command(task_ids: tuple[str, ...], show_all: bool, output: str | None, as_json: bool) -> None:
    """Runs side by side: parameters and last metrics, differences marked with '*' (as `dvc exp show`)."""
    if len(task_ids) < 2:
        raise LabpipeError("compare needs two or more task ids (or id prefixes)")
    runs = [_load(t) for t in task_ids]
    columns = [f"{r.id[:8]} {r.name}"[:40] for r in runs]
    params = [r.get_parameters(cast=True) for r in runs]
    metrics = [{f"{t}/{s}": v["last"] for t, d in r.get_last_scalar_metrics().items() for s, v in d.items()} for r in runs]
    rows, payload = [], {"runs": [{"id": r.id, "name": r.name, "status": r.status} for r in runs], "parameters": {}, "metrics": {}}
    for kind, values in (("parameters", params), ("metrics", metrics)):
        for key in sorted(set().union(*values)):
            cells = [v.get(key) for v in values]
            differs = any(c != cells[0] for c in cells[1:])
            payload[kind][key] = {"values": cells, "differs": differs}
            if differs or show_all:
                rows.append({"": "*" if differs else "", "kind": kind[:-1] if kind == "metrics" else "param", "name": key,
                             **{c: _cell(v) for c, v in zip(columns, cells, strict=True)}})
    if output:
        from .figures import draw_scalars

        curves = [(r.id[:8], r.get_reported_scalars()) for r in runs]
        if not any(c for _, c in curves):
            raise LabpipeError("none of these runs reported scalars; there are no curves to overlay")
        out, _typed = output_path(output, "compare.png")
        _write(out, draw_scalars(curves))
    text = table(rows, ["", "kind", "name", *columns]) if rows else "(no differences; --all lists everything)"
    if output and not as_json:
        text += f"\nwrote {out}"
    emit(as_json, payload, text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
