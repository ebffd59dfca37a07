"""`labpipe datasets`: the store's datasets (ClearML Data) at a glance.

A click command; labpipe/cli.py registers it on the `labpipe` group.
"""

from __future__ import annotations

import click

from .cli_io import emit, table, when
from .store.db import require_store


@click.command("datasets")
@click.option("--project", default=None, help="Only this project (and its sub-projects).")
@click.option("--name", default=None, help="Only datasets whose name contains this.")
@click.option("--all", "show_all", is_flag=True, help="Drafts too (by default only finalized datasets).")
@click.option("--json", "as_json", is_flag=True, help="JSON: sizes in bytes, times in seconds since the epoch.")
def datasets_command(project: str | None, name: str | None, show_all: bool, as_json: bool) -> None:
    """List datasets, newest first: name, version, state, files, size, parents."""
    from .dataset import Dataset

    require_store()
    rows = Dataset.list_datasets(dataset_project=project, partial_name=name, only_completed=not show_all)
    text_rows = [{
        "id": r["id"][:12], "project": r["project"], "name": r["name"], "version": r["version"],
        "state": "final" if r["status"] in ("completed", "published") else "draft", "files": f"{r['files']:,d}",
        "size": _size(r["size"]), "parents": ", ".join(p[:8] for p in r["parents"]) or "-", "created": when(r["created"]),
    } for r in rows]
    empty = "(no datasets" + ("" if show_all else "; --all shows drafts too") + ")"
    emit(as_json, rows, table(text_rows, ["id", "project", "name", "version", "state", "files", "size", "parents", "created"])
         if rows else empty)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
