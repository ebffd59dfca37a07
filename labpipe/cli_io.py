"""What the `labpipe` command shows and writes: times, tables, JSON, and where `-o` outputs go.

Shared by every command module (cli.py, agent/commands.py, results_commands.py), so a table or an
output path behaves the same in each.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO

import click

from .errors import LabpipeError
from .progress_events import duration  # one way to write a duration, in the CLI as in the progress view


def when(ts: float | None) -> str:
    """A time for people: local `YYYY-mm-dd HH:MM:SS`, or '-' when unknown."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def seconds(start: float | None, end: float | None) -> float | None:
    """A duration for `--json`: seconds from `start` to `end` (to now while it runs), None before it starts."""
    if not start:
        return None
    return round(max(0.0, (end or time.time()) - start), 3)


def elapsed(start: float | None, end: float | None) -> str:
    """`duration` of the time from `start` to `end` (to now while it runs)."""
    return duration(seconds(start, end))


def colour_on(stream: IO | None = None) -> bool:
    """True when output to `stream` (stdout) may be coloured: it is a terminal and NO_COLOR is unset
    (https://no-color.org: any non-empty value turns colour off)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream if stream is not None else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


#: colours of the states people scan for: done, broken, busy
_STATE_COLOURS = {
    "completed": "green", "published": "green", "cached": "cyan", "failed": "red", "stopped": "magenta",
    "skipped": "yellow", "in_progress": "blue", "running": "blue", "queued": "yellow",
}


def state(status: str, colour: bool | None = None) -> str:
    """A task's or step's state as a person reads it: the one word for it (`status.shown`),
    coloured on a terminal (`colour_on`) unless `colour` says otherwise."""
    from .status import shown

    word = shown(status)
    if colour is None:
        colour = colour_on()
    if colour and word in _STATE_COLOURS:
        return click.style(word, fg=_STATE_COLOURS[word])
    return word


def table(rows: list[dict], columns: list[str], right: tuple[str, ...] = ()) -> str:
    """The one table style of every listing: plain columns, headers in lower case, numbers (and
    the columns named in `right`: durations, sizes) right-aligned. '(none)' when there are no rows.

    Cells are never parsed as numbers (an id such as 1234e5 stays text); a column is numeric when
    its cells are ints or floats.
    """
    from tabulate import tabulate

    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]

    def numeric(c: str) -> bool:
        values = [r.get(c) for r in rows if r.get(c) not in (None, "", "-")]
        return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    align = ["right" if c in right or numeric(c) else "left" for c in columns]
    return tabulate(cells, headers=columns, tablefmt="plain", disable_numparse=True, colalign=align)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def emit(as_json: bool, payload, text: str) -> None:
    """Print `payload` as JSON (for scripts: numbers as numbers, times as epoch seconds, durations
    as seconds) or `text` (for people)."""
    click.echo(json.dumps(payload, indent=2, default=str) if as_json else text)


def output_path(output: str, name: str) -> tuple[Path, bool]:
    """Where an `-o` output goes, and whether it is the path the user typed: into an existing folder
    as `name`, else at `output` itself.

    `name` comes from the store (a recorded file name), so it is made a safe file name first and a
    link at the resulting path is never followed (see `contained`). The folder it lands in must exist
    already (no folders are made up from a mistyped path); a missing or wrong one is one clear error.
    """
    from . import contained

    out = Path(output).expanduser()
    try:
        if out.is_dir():
            inner = out / contained.file_name_for(name, fallback="artifact")
            if not contained.inside(out, inner):  # e.g. a link planted there, pointing elsewhere
                raise LabpipeError(f"cannot write {inner}: it leads outside {out} (a link?); remove it or choose another path")
            return inner, False
        if output.endswith(("/", os.sep)):
            raise LabpipeError(f"cannot write {output}: no such folder; create it first (mkdir -p {output}) or choose another path")
        folder = out.parent
        if not folder.is_dir():
            if folder.exists():
                raise LabpipeError(f"cannot write {out}: {folder} is not a folder; choose another path")
            raise LabpipeError(f"cannot write {out}: no such folder {folder}; create it first (mkdir -p {folder}) or choose another path")
    except OSError as exc:  # a name too long for the filesystem, a folder we may not look into, ...
        raise cannot_write(out, exc) from None
    return out, True


def cannot_write(out: Path, exc: OSError) -> LabpipeError:
    """One clear error for an output that could not be written (permissions, full disk, ...)."""
    if isinstance(exc, PermissionError):
        return LabpipeError(f"cannot write {out}: permission denied; choose a place you can write to")
    reason = exc.strerror or str(exc)
    return LabpipeError(f"cannot write {out}: {reason}")
