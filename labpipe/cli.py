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
from .cli_io import cannot_write, duration, emit, output_path, seconds, state, table, when
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
    """List tasks, newest first (a run whose process is gone is released first, never shown running).

    A pipeline's step is named as its DAG names it (`slow_1`, `slow_2` for a component called twice).
    """
    from .store import pipelines, tasks
    from .store.db import get_database

    require_store()
    db = get_database()
    _reap(db)
    rows = tasks.find_tasks(db, project=project, name=name, status=list(status) or None,
                            type=list(task_type) or None, tags=list(tag) or None, include_archived=archived, limit=limit)
    steps = pipelines.step_names(db, [r.id for r in rows if r.parent])
    payload = [{
        "id": r.id, "project": r.project, "name": steps.get(r.id, r.name), "type": r.type, "status": r.status,
        "parent": r.parent, "queue": r.queue, "worker": r.worker, "created": r.created, "started": r.started,
        "completed": r.completed, "elapsed": seconds(r.started, r.completed), "archived": r.archived,
    } for r in rows]
    cols = ["id", "project", "name", "type", "status", "created", "elapsed"]
    if any(r.status in ("in_progress", "queued") for r in rows):
        cols += ["queue", "worker"]
    shown = [dict(p, status=state(p["status"]), created=when(p["created"]), elapsed=duration(p["elapsed"]),
                  queue=p["queue"] or "", worker=p["worker"] or "") for p in payload]
    emit(as_json, payload, table(shown, cols, right=("elapsed",)))


@main.command("show")
@click.argument("task_id")
@click.option("--log", "show_log", is_flag=True, help="Print the console log (follows a running task with --follow).")
@click.option("--follow", is_flag=True, help="With --log: keep printing until the task ends.")
@click.option("--json", "as_json", is_flag=True, help="JSON: times in seconds since the epoch, durations in seconds.")
def show_cmd(task_id, show_log, follow, as_json):
    """Show a task: status, times, parameters, artifacts, last scalars; a pipeline run: its steps too."""
    from .task import Task

    _reap(require_store())
    t = Task.get_task(task_id=task_id)
    if show_log:
        _print_log(t, follow)
        return
    r = t.data
    payload = {
        "id": r.id, "name": r.name, "project": r.project, "type": r.type, "status": r.status,
        "status_message": r.status_message, "parent": r.parent, "queue": r.queue, "worker": r.worker,
        "created": r.created, "started": r.started, "completed": r.completed,
        "elapsed": seconds(r.started, r.completed), "tags": r.tags, "system_tags": r.system_tags,
        "parameters": t.get_parameters(cast=True),
        "artifacts": {a.name: {"type": a.type, "size": a.size, "hash": a.hash, "preview": a.preview} for a in t.artifacts.values()},
        "models": [m.name for m in t.models["output"]],
        "scalars": t.get_last_scalar_metrics(),
    }
    if r.type == "controller":
        payload["steps"] = _steps(t)
    if as_json:
        emit(True, payload, "")
        return
    shown = dict(payload, status=state(r.status), created=when(r.created), started=when(r.started) if r.started else None,
                 completed=when(r.completed) if r.completed else None, elapsed=duration(payload["elapsed"]) if r.started else None)
    lines = [f"{k:15} {shown[k]}" for k in ("id", "name", "project", "type", "status", "status_message", "parent",
                                             "queue", "worker", "created", "started", "completed", "elapsed", "tags")
             if shown[k] not in (None, "", [])]
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
    if "steps" in payload:
        lines += ["", _steps_heading(payload["steps"])]
        if payload["steps"]:
            rows = [dict(s, status=state(s["status"]), duration=duration(s["duration"]), task=(s["task"] or "-")[:8],
                         error=_first_line(s["error"]) if s["status"] == "failed" else "") for s in payload["steps"]]
            cols = ["step", "status", "cached", "duration", "task"] + (["error"] if any(x["error"] for x in rows) else [])
            lines += ["  " + line for line in table([dict(x, step=x["name"]) for x in rows], cols, right=("duration",)).splitlines()]
    click.echo("\n".join(lines))


def _print_log(t, follow: bool) -> None:
    """A task's console output as it was printed; `(no output)` (on stderr) for a task that printed nothing."""
    from .store import outputs

    after, printed = 0, False

    def drain() -> None:
        nonlocal after, printed
        for row in outputs.read_console(t.db, t.id, after):
            click.echo(row["text"], nl=False)
            after, printed = row["seq"], printed or bool(row["text"])

    while True:
        drain()
        if not follow or t.get_status() not in ("queued", "in_progress"):
            if follow:
                drain()
            break
        time.sleep(0.3)
    if not printed:
        click.echo(f"(no output: task {t.id[:8]} {t.name!r} printed nothing"
                   + (")" if t.get_status() not in ("queued", "in_progress") else " yet)"), err=True)


def _steps(t) -> list[dict]:
    """A pipeline run's steps, in the order they were added: name, state word, cached or not,
    duration (seconds), task id, parents, error."""
    from .status import COMPLETED, shown
    from .store import pipelines

    out = []
    for n in pipelines.load_nodes(t.db, t.id):
        cached = n["status"] == "cached"
        out.append({
            "name": n["name"], "status": COMPLETED if cached else shown(n["status"]), "cached": cached,
            "duration": round(max(0.0, n["completed"] - n["started"]), 3) if n["started"] and n["completed"] else None,
            "task": n["task"], "parents": n["parents"], "error": n["error"],
        })
    return out


def _steps_heading(steps: list[dict]) -> str:
    from collections import Counter

    if not steps:
        return "steps: none yet"
    counts = Counter(s["status"] for s in steps)
    cached = sum(s["cached"] for s in steps)
    parts = [f"{n} {word}" for word, n in counts.most_common()] + ([f"{cached} of them cached"] if cached else [])
    return f"steps ({len(steps)}: {', '.join(parts)}):"


def _first_line(text: str | None, width: int = 100) -> str:
    line = next((x.strip() for x in (text or "").splitlines() if x.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


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
    from .pipeline.dag import DONE_STATUSES
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
        payload.append({
            "id": r.id, "project": r.project, "name": r.name, "version": r.runtime.get("pipeline_version") or "",
            "status": r.status, "steps": sum(c.values()), "done": sum(c.get(k, 0) for k in DONE_STATUSES),
            "cached": c.get("cached", 0), "failed": c.get("failed", 0), "created": r.created,
            "elapsed": seconds(r.started, r.completed),
        })
    shown = [dict(p, status=state(p["status"]), steps=f"{p['done']}/{p['steps']}", created=when(p["created"]),
                  elapsed=duration(p["elapsed"])) for p in payload]
    emit(as_json, payload, table(shown, ["id", "project", "name", "version", "status", "steps", "cached", "failed", "created",
                                         "elapsed"], right=("steps", "elapsed")))


@main.command("clone")
@click.argument("task_id")
@click.option("--name", default=None, help="Name of the clone (default: the original's; a pipeline run's: its next run number).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION/NAME=VALUE",
              help="Override a parameter the task has, e.g. --set Args/lr=0.01 (repeatable). Values are parsed as JSON "
                   "when they can be, and must fit the parameter's type.")
@click.option("--enqueue", "queue", default=None,
              help="Enqueue the clone on this queue (a pipeline: services). A queue that does not exist yet is "
                   "created; a hint says when no live worker serves the queue. Later: `labpipe enqueue ID`.")
@click.option("--json", "as_json", is_flag=True)
def clone_cmd(task_id, name, overrides, queue, as_json):
    """Clone a task (or a pipeline run), override parameters, optionally enqueue it.

    Every --set is checked before anything is created: bad input leaves no clone behind.
    """
    from . import params
    from .errors import ParameterError
    from .names import check_label
    from .task import Task

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
    if queue is not None:
        _check_queue(queue, "--enqueue")
    if name is not None:
        check_label(name, kind="task", where="--name", allow_empty=False)
    source = Task.get_task(task_id=task_id)
    known = source.get_parameters(cast=True)
    for key, value in list(values.items()):
        try:  # what update_parameters checks, before the clone exists
            params.split_key(key)
            if key not in known:
                has = ", ".join(sorted(known)[:30]) + (", ..." if len(known) > 30 else "")
                raise ParameterError(f"task {source.id[:8]} ({source.name}) has no parameter {key!r}; "
                                     f"it has: {has or 'none'}")
            values[key] = params.cast_like(value, known[key], key)
            params.encode(values[key])
        except ParameterError as exc:
            raise ParameterError(f"--set {given[key]!r}: {exc}") from None
    clone = Task.clone(source, name=name)
    if values:
        clone.update_parameters(values)
    if queue:
        new_queue = _enqueue(clone, queue)
    emit(as_json, {"id": clone.id, "name": clone.name, "queue": queue, "parameters": clone.get_parameters(cast=True)},
          f"cloned {source.id[:8]} -> {clone.id} ({clone.name})" + (f", enqueued on {queue!r}" if queue else ""))
    if queue:
        _queue_hints(clone, queue, new_queue)


@main.command("enqueue")
@click.argument("task_id")
@click.option("--queue", "-q", default=None,
              help="Queue to put it on (default: services for a pipeline run, else default). A new queue is created.")
@click.option("--json", "as_json", is_flag=True)
def enqueue_cmd(task_id, queue, as_json):
    """Put a task on a queue for a worker to run: a clone made without --enqueue, or a failed or
    stopped task to run again."""
    from .errors import QueueError
    from .task import Task

    require_store()
    if queue is not None:
        _check_queue(queue, "--queue")
    task = Task.get_task(task_id=task_id)
    queue = queue or ("services" if task.task_type == "controller" else "default")
    status = task.get_status()
    if status not in ("created", "failed", "stopped"):
        hint = {"queued": f"it is already queued on {task.data.queue!r}",
                "in_progress": "it is running; stop it first with `labpipe stop`"}.get(
            status, f"clone it to run it again: `labpipe clone {task.id[:8]} --enqueue {queue}`")
        raise QueueError(f"cannot enqueue task {task.id[:8]} ({task.name}): it is {status}; {hint}")
    new_queue = _enqueue(task, queue)
    emit(as_json, {"id": task.id, "name": task.name, "queue": queue}, f"enqueued {task.id[:8]} ({task.name}) on {queue!r}")
    _queue_hints(task, queue, new_queue)


def _check_queue(queue: str, option: str) -> None:
    from .errors import QueueError
    from .names import check_queue_name

    if not queue.strip():
        raise QueueError(f"{option} needs a queue name, e.g. {option} default (a pipeline: {option} services)")
    check_queue_name(queue, where=option)


def _enqueue(task, queue: str) -> bool:
    """Enqueue `task` on `queue`; True if that queue did not exist before (it is created)."""
    from .store import tasks
    from .task import Task

    new_queue = not tasks.queue_exists(task.db, queue)
    Task.enqueue(task, queue_name=queue)
    return new_queue


def _queue_hints(task, queue: str, new_queue: bool) -> None:
    """On stderr: the queue was just created; no live worker serves it (and how to start one)."""
    from .store import leases
    from .waiting import WORKER_MAX_AGE

    if new_queue:
        click.echo(f"labpipe: queue {queue!r} did not exist; it was created", err=True)
    if not any(queue in w["queues"] for w in leases.live_workers(task.db, WORKER_MAX_AGE)):
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
