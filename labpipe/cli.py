"""The `labpipe` command: look at tasks, queues and artifacts in the store; run agents; collect garbage.

Every listing prints aligned text for people and, with `--json`, JSON for scripts.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import click

from . import config
from .cli_io import cannot_write, elapsed, emit, output_path, table, when
from .errors import LabpipeError
from .status import STATUSES
from .store.db import require_store


def _reap(db) -> None:
    """Release runs whose owner is gone before showing statuses, so a dead run never shows as running.
    Runs of this machine are judged at once (their process gone, or silent for a lease: see
    store/leases.py); a store this user may only read is shown as it is."""
    from .store import leases

    try:
        leases.reap_expired(db)
    except LabpipeError:
        pass


class _Group(click.Group):
    """Turns labpipe errors into one clear line and exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabpipeError as exc:
            click.echo(f"labpipe: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("--store", type=click.Path(), default=None, help="Store folder (default: $LABPIPE_STORE or ./store).")
@click.version_option(package_name="labpipe")
def main(store: str | None) -> None:
    """labpipe: ClearML-style pipelines on one machine, no server."""
    if store:
        config.set_store(store)


@main.command("tasks")
@click.option("--project", default=None)
@click.option("--name", default=None)
@click.option("--status", multiple=True, type=click.Choice(STATUSES), help="Repeatable.")
@click.option("--type", "task_type", multiple=True)
@click.option("--tag", multiple=True, help="Repeatable; '-tag' excludes.")
@click.option("--archived/--no-archived", default=False, help="Include archived tasks.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def tasks_cmd(project, name, status, task_type, tag, archived, limit, as_json):
    """List tasks, newest first (a run whose process is gone is released first, never shown running)."""
    from .store import tasks
    from .store.db import get_database

    require_store()
    _reap(get_database())
    rows = tasks.find_tasks(get_database(), project=project, name=name, status=list(status) or None,
                            type=list(task_type) or None, tags=list(tag) or None, include_archived=archived, limit=limit)
    payload = [{
        "id": r.id, "project": r.project, "name": r.name, "type": r.type, "status": r.status, "queue": r.queue or "",
        "worker": r.worker or "", "created": when(r.created), "elapsed": elapsed(r.started, r.completed),
        "archived": r.archived,
    } for r in rows]
    cols = ["id", "project", "name", "type", "status", "created", "elapsed"]
    if any(r.status in ("in_progress", "queued") for r in rows):
        cols += ["queue", "worker"]
    emit(as_json, payload, table(payload, cols))


@main.command("show")
@click.argument("task_id")
@click.option("--log", "show_log", is_flag=True, help="Print the console log (follows a running task with --follow).")
@click.option("--follow", is_flag=True, help="With --log: keep printing until the task ends.")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(task_id, show_log, follow, as_json):
    """Show a task: status, times, parameters, artifacts, last scalars."""
    from .store import outputs
    from .task import Task

    _reap(require_store())
    t = Task.get_task(task_id=task_id)
    r = t.data
    if show_log:
        after = 0
        while True:
            for row in outputs.read_console(t._db, t.id, after):
                click.echo(row["text"], nl=False)
                after = row["seq"]
            if not follow or t.get_status() not in ("queued", "in_progress"):
                if follow:
                    for row in outputs.read_console(t._db, t.id, after):
                        click.echo(row["text"], nl=False)
                return
            time.sleep(0.3)
    payload = {
        "id": r.id, "name": r.name, "project": r.project, "type": r.type, "status": r.status,
        "status_message": r.status_message, "parent": r.parent, "queue": r.queue, "worker": r.worker,
        "created": when(r.created), "started": when(r.started), "completed": when(r.completed),
        "elapsed": elapsed(r.started, r.completed), "tags": r.tags, "system_tags": r.system_tags,
        "parameters": t.get_parameters(),
        "artifacts": {a.name: {"type": a.type, "size": a.size, "hash": a.hash, "preview": a.preview} for a in t.artifacts.values()},
        "models": [m.name for m in t.models["output"]],
        "scalars": t.get_last_scalar_metrics(),
    }
    lines = [f"{k:15} {payload[k]}" for k in ("id", "name", "project", "type", "status", "status_message", "parent",
                                               "queue", "worker", "created", "started", "completed", "elapsed", "tags")
             if payload[k] not in (None, "", [])]
    if payload["parameters"]:
        lines += ["", "parameters:"] + [f"  {k} = {v!r}" for k, v in payload["parameters"].items()]
    if payload["artifacts"]:
        lines += ["", "artifacts:"] + [
            f"  {n:20} {a['type']:8} {a['size']:>12,d} B  {a['preview'][:80]}" for n, a in payload["artifacts"].items()
        ]
    if payload["models"]:
        lines += ["", "models: " + ", ".join(payload["models"])]
    if payload["scalars"]:
        lines += ["", "last scalars:"] + [
            f"  {title}/{series}: {v['last']:.6g} (min {v['min']:.6g}, max {v['max']:.6g})"
            for title, d in payload["scalars"].items() for series, v in d.items()
        ]
    emit(as_json, payload, "\n".join(lines))


@main.command("queues")
@click.option("--json", "as_json", is_flag=True)
def queues_cmd(as_json):
    """List queues with their depth (queued) and running counts."""
    from .store import tasks
    from .store.db import get_database

    require_store()
    _reap(get_database())
    rows = tasks.queue_stats(get_database())
    emit(as_json, rows, table(rows, ["name", "queued", "running"]))


@main.command("archive")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--undo", is_flag=True, help="Unarchive instead.")
def archive_cmd(task_ids, undo):
    """Archive tasks (hidden from listings, never a cache hit)."""
    from .task import Task

    require_store()
    for tid in task_ids:
        t = Task.get_task(task_id=tid)
        t.unarchive() if undo else t.archive()
        click.echo(f"{'unarchived' if undo else 'archived'} {tid}")


@main.command("artifact")
@click.argument("task_id")
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="File (or folder, for a folder artifact) to write, or - for stdout. An existing folder gets the "
                   "artifact inside it under its file name (e.g. table.pkl), as cp does. The folder it goes into must exist.")
def artifact_cmd(task_id, name, output):
    """Write a task's artifact to a file (or folder)."""
    from . import contained
    from .errors import ArtifactError
    from .names import shown
    from .task import Task

    require_store()
    t = Task.get_task(task_id=task_id)
    arts = t.artifacts
    if name not in arts:
        listed = ", ".join(shown(a) for a in list(arts)[:20]) + (", ..." if len(arts) > 20 else "")
        raise ArtifactError(f"task {task_id} has no artifact {shown(name)}; it has: {listed or 'none'}")
    art = arts[name]
    src = Path(art.get_local_copy())
    if output == "-":  # the bytes to stdout, for piping
        if src.is_dir():
            raise ArtifactError(f"artifact {name!r} of task {task_id} is a folder; it cannot go to stdout: give -o a folder path")
        with open(src, "rb") as fh:
            shutil.copyfileobj(fh, click.get_binary_stream("stdout"))
        click.echo(f"wrote {art.filename or name} to stdout ({art.type}, {art.size:,d} bytes)", err=True)
        return
    out, typed = output_path(output, art.filename or name)
    try:  # nothing below a typed path, nor a name labpipe chose, is written through a link
        if src.is_dir():
            contained.copy_tree(src, out, follow=typed)
        else:
            contained.copy_file(src, out, follow=typed)
    except OSError as exc:
        raise cannot_write(out, exc) from None
    click.echo(f"wrote {out} ({art.type}, {art.size:,d} bytes)")


@main.command("gc")
@click.option("--grace", default=3600.0, show_default=True, help="Keep unreferenced blobs younger than this many seconds.")
@click.option("--json", "as_json", is_flag=True)
def gc_cmd(grace, as_json):
    """Delete blobs that no task references (safe while other processes write)."""
    from dataclasses import asdict

    from .store import gc
    from .store.db import get_database

    require_store()
    try:
        gc.check_grace(grace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grace") from None
    report = gc.collect(get_database(), grace=grace)
    emit(as_json, asdict(report),
          f"deleted {report.deleted_files} blob files and {report.deleted_inline} inline blobs, "
          f"freed {report.freed_bytes:,d} bytes; kept {report.kept}; removed {report.temp_files} stale temp files")


@main.command("fsck")
@click.option("--no-repair", is_flag=True, help="Only report: quarantine nothing, remove nothing.")
@click.option("--json", "as_json", is_flag=True)
def fsck_cmd(no_repair, as_json):
    """Verify every blob and every row naming one; quarantine corrupt blobs, remove stale temp files.

    Exit status 1 if problems remain (a row whose blob is gone: its step must run again).
    """
    from .store import fsck

    db = require_store()
    report = fsck.check(db, repair=not no_repair)
    lines = [f"checked {report.file_blobs} blob files, {report.inline_blobs} inline blobs and {report.rows} rows naming them",
             f"corrupt: {report.corrupt} (quarantined {report.quarantined}); rows naming a missing blob: {report.missing}; "
             f"removed {report.temp_files_removed} stale temp files and {report.cache_copies_removed} cache copies"]
    lines += [f"  {'repaired' if p.repaired else 'PROBLEM'}: {p.detail}" for p in report.problems]
    lines.append("ok" if not report.remaining else f"{report.remaining} problems remain")
    emit(as_json, report.as_dict(), "\n".join(lines))
    if report.remaining:
        sys.exit(1)


@main.command("plot")
@click.argument("pipeline_id")
@click.option("-o", "--output", default=None, type=click.Path(),
              help="File to write (default dag.<format>); an existing folder gets dag.<format> inside it. "
                   "The folder it goes into must exist.")
@click.option("--format", "fmt", default=None, metavar="png|svg|dot|mermaid",
              help="png or svg (a picture), dot (Graphviz text) or mermaid (flowchart text); "
                   "default: from the output's suffix (.png .svg .dot/.gv .mmd/.mermaid), else png.")
def plot_cmd(pipeline_id, output, fmt):
    """Draw a pipeline run's DAG (status colours, cached marks, durations, failed steps' errors)."""
    from .pipeline.dag_formats import SUFFIXES, format_for
    from .pipeline.render import plot_pipeline

    require_store()
    fmt = format_for(None if output is None or Path(output).is_dir() else output, fmt)
    default_name = "dag" + SUFFIXES[fmt][0]
    out, typed = output_path(output or default_name, default_name)
    data = plot_pipeline(pipeline_id, fmt=fmt)
    try:
        if typed:
            out.write_bytes(data)
        else:  # dag.png inside a folder: never written through a link there
            from . import contained

            contained.replace_file(out, data)
    except OSError as exc:
        raise cannot_write(out, exc) from None
    click.echo(f"wrote {out} ({fmt}, {len(data):,d} bytes)")


@main.command("pipelines")
@click.option("--project", default=None)
@click.option("--name", default=None, help="Pipeline name (as given to the decorator or controller).")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def pipelines_cmd(project, name, limit, as_json):
    """List pipeline runs: status, version, steps done/total/cached."""
    from .store import pipelines, tasks
    from .store.db import get_database

    require_store()
    db = get_database()
    rows = [r for r in tasks.find_tasks(db, project=project, type=["controller"], include_archived=False, limit=limit)
            if name is None or r.runtime.get("pipeline_name") == name]
    counts = pipelines.node_counts(db, [r.id for r in rows])
    payload = []
    for r in rows:
        c = counts.get(r.id, {})
        done = sum(c.get(k, 0) for k in ("completed", "cached", "failed", "aborted", "skipped"))
        payload.append({
            "id": r.id, "project": r.project, "name": r.name, "version": r.runtime.get("pipeline_version") or "",
            "status": r.status, "steps": f"{done}/{sum(c.values())}", "cached": c.get("cached", 0),
            "failed": c.get("failed", 0), "created": when(r.created), "elapsed": elapsed(r.started, r.completed),
        })
    emit(as_json, payload, table(payload, ["id", "project", "name", "version", "status", "steps", "cached", "failed", "created", "elapsed"]))


@main.command("clone")
@click.argument("task_id")
@click.option("--name", default=None, help="Name of the clone (default: the original's).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION/NAME=VALUE",
              help="Override a parameter, e.g. --set Args/lr=0.01 (repeatable). Values are parsed as JSON when they can be.")
@click.option("--enqueue", "queue", default=None,
              help="Enqueue the clone on this queue (a pipeline: services). A queue that does not exist yet is "
                   "created; a hint says when no live worker serves the queue.")
@click.option("--json", "as_json", is_flag=True)
def clone_cmd(task_id, name, overrides, queue, as_json):
    """Clone a task (or a pipeline run), override parameters, optionally enqueue it.

    Every --set is checked before anything is created: bad input leaves no clone behind.
    """
    from . import params
    from .errors import ParameterError, QueueError
    from .names import check_label, check_queue_name
    from .store import leases, tasks
    from .task import Task
    from .waiting import WORKER_MAX_AGE

    require_store()
    values, given = {}, {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or "/" not in key:
            raise ParameterError(f"--set {item!r}: expected SECTION/NAME=VALUE, e.g. --set Args/lr=0.01")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
        given[key] = item
    if queue is not None and not queue.strip():
        raise QueueError("--enqueue needs a queue name, e.g. --enqueue default (a pipeline: --enqueue services)")
    if queue is not None:
        check_queue_name(queue, where="--enqueue")
    if name is not None:
        check_label(name, kind="task", where="--name", allow_empty=False)
    source = Task.get_task(task_id=task_id)
    known = source.get_parameters()
    for key, value in list(values.items()):
        try:  # what update_parameters checks, before the clone exists
            if key in known:
                values[key] = params.cast_like(value, known[key], key)
            params.split_key(key)
            params.encode(values[key])
        except ParameterError as exc:
            raise ParameterError(f"--set {given[key]!r}: {exc}") from None
    clone = Task.clone(source, name=name)
    if values:
        clone.update_parameters(values)
    new_queue = False
    if queue:
        new_queue = not tasks.queue_exists(clone._db, queue)
        Task.enqueue(clone, queue_name=queue)
    emit(as_json, {"id": clone.id, "queue": queue, "parameters": clone.get_parameters()},
          f"cloned {task_id} -> {clone.id}" + (f", enqueued on {queue!r}" if queue else ""))
    if queue:
        if new_queue:
            click.echo(f"labpipe: queue {queue!r} did not exist; it was created", err=True)
        if not any(queue in w["queues"] for w in leases.live_workers(clone._db, WORKER_MAX_AGE)):
            click.echo(f"labpipe: no worker serves queue {queue!r} yet: start one with `labpipe agent --queue {queue}`", err=True)


def _register_agent_commands() -> None:
    """The agent layer's commands (agent, workers, stop) live with the agent code."""
    from .agent import commands

    for command in (commands.agent_command, commands.workers_command, commands.stop_command):
        main.add_command(command)


def _register_results_commands() -> None:
    """Reading reported results (scalars, plots, compare) lives with its own module."""
    from . import results_commands

    for command in (results_commands.scalars_command, results_commands.plots_command, results_commands.compare_command):
        main.add_command(command)


def _register_dataset_commands() -> None:
    from . import dataset_commands

    main.add_command(dataset_commands.datasets_command)


_register_agent_commands()
_register_results_commands()
_register_dataset_commands()


if __name__ == "__main__":
    main()
