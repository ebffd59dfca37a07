"""The agent's command-line faces: `labpipe agent`, `labpipe workers`, `labpipe stop`.

click.Command objects; labpipe/cli.py registers them on the `labpipe` group.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from ..cli_io import duration, table
from ..clock import wall
from ..errors import LabpipeError
from ..store.db import require_store

#: The agent's one log line format, for its own lines and its workers' (forked, they inherit it):
#: `2025-01-31 14:02:03 labpipe agent[4242] INFO: 2 worker(s) serving default ...`
LOG_FORMAT = "%(asctime)s labpipe agent[%(process)d] %(levelname)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger("labpipe.agent")


@click.command("agent")
@click.option("--queue", "-q", "queues", multiple=True, metavar="NAME",
              help="Queue to serve (repeat for several; served in the order given). Default: default.")
@click.option("--services", is_flag=True,
              help="Serve the services queue in services mode: several tasks at once (pipeline controllers and the "
                   "steps they put on services), up to --max-services.")
@click.option("--max-services", type=click.IntRange(min=1), default=None, metavar="N",
              help="Most services tasks run at once (a worker process each, started as needed). "
                   "Default: 8 (env LABPIPE_MAX_SERVICES).")
@click.option("--workers", "-n", type=click.IntRange(min=1), default=None,
              help="Worker processes for the queues other than services, each running one task at a time. Default: one per core.")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="On SIGTERM/Ctrl-C, seconds a running task may go on before it is stopped and re-queued.")
@click.option("--lease", "lease_seconds", type=click.FloatRange(min=0.5), default=None,
              help="Seconds a claim on a task lasts without renewal (how soon a killed worker's task is noticed).")
def agent_command(queues: tuple[str, ...], services: bool, max_services: int | None, workers: int | None, grace: float,
                  lease_seconds: float | None) -> None:
    """Run workers that serve queues of the store until stopped (like `clearml-agent daemon`).

    The services queue (`--services`, or `--queue services`) is served as `clearml-agent
    --services-mode` serves it: a pipeline controller and the steps it puts on services, or several
    controllers, run at once, each in a worker process of its own started when needed, up to
    --max-services (default 8). At that bound, a services task that cannot start is reported.

    The store folder is created if there is none yet (the start-up line then says so). A store that
    cannot be served (a file, not SQLite, truncated, a newer schema, a network filesystem) is one
    line on stderr and exit status 1, before anything starts; so is a pool that stops serving later.
    """
    from ..config import store_path
    from ..names import check_queue_name
    from ..store.db import check_store, get_database
    from .daemon import run_daemon

    for queue in queues:  # before the store is opened or any process started
        check_queue_name(queue, where="--queue")
    names = list(dict.fromkeys(queues)) + (["services"] if services and "services" not in queues else [])
    if not names:
        names = ["default"]
    if workers is None:
        workers = os.cpu_count() or 1
    from .pool import MAX_SERVICES

    bound = max_services or MAX_SERVICES
    others = [q for q in names if q != "services"]
    serving = ([f"{workers} worker(s) serving {', '.join(others)}"] if others else []) + (
        [f"services mode on services (up to {bound} task(s) at once)"] if "services" in names else [])
    new_store = not get_database().path.is_file()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT)
    try:
        check_store()
    except LabpipeError as exc:
        log.error("%s", exc)
        sys.exit(1)
    pools = []

    def started(pool) -> None:
        pools.append(pool)
        log.info("%s on %s%s (pid %d; worker pids %s); stop with Ctrl-C or SIGTERM", "; ".join(serving),
                 "a new store at " if new_store else "store ", store_path(), os.getpid(), " ".join(map(str, pool.pids)))

    code = run_daemon(names, workers, grace=grace, lease_seconds=lease_seconds, on_start=started, max_services=bound)
    failure = pools[0].failure if pools else None
    if failure:
        log.error("stopped: cannot serve: %s", failure)
    else:
        log.info("stopped")
    sys.exit(code)


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def workers_command(as_json: bool) -> None:
    """List live workers (pools and agents) and the task each is running."""
    from ..store import leases, tasks
    from ..store.db import get_database
    from ..waiting import WORKER_MAX_AGE

    require_store()
    db = get_database()
    try:
        leases.reap_expired(db)  # a killed agent's tasks are released (and its rows removed) before listing
    except LabpipeError:
        pass
    running = {t.worker: t for t in tasks.find_tasks(db, status=["in_progress"], include_archived=True) if t.worker}
    now = wall()
    rows = []
    for w in leases.live_workers(db, WORKER_MAX_AGE):
        t = running.get(w["id"])
        rows.append({
            "id": w["id"], "kind": w["kind"], "pid": w["pid"], "host": w["host"], "queues": w["queues"],
            "task": t.id if t else None, "task_name": t.name if t else None,
            "running_for": round(now - t.started, 1) if t and t.started else None,
            "last_seen": round(now - w["last_seen"], 1),
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no live workers (start some with `labpipe agent --queue default`)")
        return
    shown = [dict(r, worker=r["id"], queues=",".join(r["queues"]), task=f"{r['task'][:8]} {r['task_name']}" if r["task"] else "-",
                  **{"running for": duration(r["running_for"])}, seen=f"{duration(r['last_seen'])} ago") for r in rows]
    click.echo(table(shown, ["worker", "kind", "pid", "queues", "task", "running for", "seen"], right=("running for", "seen")))


@click.command("stop")
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--message", "-m", default="stopped by user", show_default=True, help="Status message to record.")
def stop_command(task_ids: tuple[str, ...], message: str) -> None:
    """Stop tasks: a queued task leaves its queue, a running one's process ends within a second; a
    pipeline's queued and running steps are stopped with it."""
    from ..store import leases
    from ..task import Task

    require_store()
    failed = False
    for tid in task_ids:
        try:
            task = Task.get_task(task_id=tid)
            before, runner = task.get_status(), task.data.worker or ""
            task.mark_stopped(status_message=message)
            # a pipeline's steps (and nested runs) stop with it, even if its controller is gone
            below = leases.stop_below(task.db, task.id, message) if task.task_type == "controller" else []
        except LabpipeError as exc:
            click.echo(f"labpipe stop: {exc}", err=True)
            failed = True
            continue
        note = ""
        if before == "in_progress":
            note = ("; the process that runs it (pid " + runner.rsplit(":", 1)[-1] + ") stops it within a second"
                    if runner.startswith("local:") else "; its worker ends its process within a second")
        if below:
            note += f"; {len(below)} of its steps stopped too"
        click.echo(f"stopped {tid} (was {before}){note}")
    if failed:
        sys.exit(1)
