"""What the `labpipe` command shows and writes: times, tables, JSON, and where `-o` outputs go.

Shared by every command module (cli.py, agent/commands.py, results_commands.py), so a table or an
output path behaves the same in each.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import click

from .errors import LabpipeError


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def elapsed(start: float | None, end: float | None) -> str:
    if not start:
        return "-"
    secs = (end or time.time()) - start
    if secs < 1:
        return f"{secs * 1000:.0f} ms"
    if secs < 120:
        return f"{secs:.1f} s"
    return f"{secs / 60:.1f} min"


def table(rows: list[dict], columns: list[str]) -> str:
    from tabulate import tabulate

    if not rows:
        return "(none)"
    return tabulate([[r.get(c, "") for c in columns] for r in rows], headers=columns, tablefmt="plain", disable_numparse=True)


def emit(as_json: bool, payload, text: str) -> None:
    click.echo(json.dumps(payload, indent=2, default=str) if as_json else text)


def output_path(output: str, name: str) -> Path:
    """Where an `-o` output goes: into an existing folder as `name`, else at `output` itself.

    The folder it lands in must exist already (no folders are made up from a mistyped path); a missing
    or wrong one is one clear error naming it.
    """
    out = Path(output).expanduser()
    if out.is_dir():
        return out / name
    if output.endswith(("/", os.sep)):
        raise LabpipeError(f"cannot write {output}: no such folder; create it first (mkdir -p {output}) or choose another path")
    folder = out.parent
    if not folder.is_dir():
        if folder.exists():
            raise LabpipeError(f"cannot write {out}: {folder} is not a folder; choose another path")
        raise LabpipeError(f"cannot write {out}: no such folder {folder}; create it first (mkdir -p {folder}) or choose another path")
    return out


def cannot_write(out: Path, exc: OSError) -> LabpipeError:
    """One clear error for an output that could not be written (permissions, full disk, ...)."""
    if isinstance(exc, PermissionError):
        return LabpipeError(f"cannot write {out}: permission denied; choose a place you can write to")
    reason = exc.strerror or str(exc)
    return LabpipeError(f"cannot write {out}: {reason}")
