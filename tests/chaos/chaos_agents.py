"""Chaos scenarios for agents and pools: real `labpipe agent` processes, real SIGKILLs, real files.

Each scenario runs in its own store under `workdir` and returns its figures (see tests/chaos and
tools/chaos.py). Task-side evidence is a log file every task appends to with O_APPEND ("<tag>
<attempt>" when its body finished), so what ran is counted from the tasks, not from the store.

- kills: agents serving one queue, SIGKILLs of single workers, of agents (their workers then re-queue
  their tasks on the way out) and of whole agents with their workers (another agent sees their
  processes gone), and SIGSTOPs of whole agents (alive but silent: another agent sees their heartbeats
  stop), replacement agents started like a service manager would; lost, double-completed, and the max
  seconds from a kill until each task the victim held was released.
- poison_storm: tasks that SIGKILL their own worker, then good tasks; the poison ones are failed
  naming themselves, the agent stays up and the good ones run.
- bad_stores: `labpipe agent` on each kind of unusable store: exit code and seconds.
- clock_steps: agents whose clocks disagree by +30 s run healthy tasks (none failed or re-run); an
  owner 600 s ahead is killed, or hung, and its task is released within the lease + 2 s.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import labpipe
from labpipe import config
from labpipe.clock import ENV_OFFSET
from labpipe.store import leases, tasks
from labpipe.store.db import get_database
from labpipe.store.records import Lease
from labpipe.task import Task

TERMINAL = ("completed", "failed", "stopped")


# -- what the tasks run (workers run their source) -------------------------------------------------


def chaos_work(log, tag, seconds):
    """Sleep, then append '<tag> <attempt> <worker pid>' to the log: the task-side record that its body finished."""
    import os
    import time

    from labpipe import Task

    attempt = Task.current_task().data.attempt
    time.sleep(seconds)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{tag} {attempt} {os.getppid()}\n".encode())
    os.close(fd)
    return tag


def chaos_started(log, tag, seconds):
    """Append '<tag> <attempt>' when it starts, then sleep: counts how often a long run was started."""
    import os
    import time

    from labpipe import Task

    attempt = Task.current_task().data.attempt
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{tag} {attempt} {os.getppid()}\n".encode())
    os.close(fd)
    time.sleep(seconds)
    return tag


def chaos_poison():
    """Kill the worker that runs it (its parent): what an out-of-memory kill or a native crash does."""
    import os
    import signal
    import time

    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)


# -- plumbing ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _store(folder: Path):
    """Point this process (and the processes it starts) at a store under `folder`; restore afterwards."""
    old_env, old_explicit = os.environ.get(config.ENV_STORE), config._explicit
    old_task = Task._current
    labpipe.set_store(folder)
    try:
        yield get_database(folder)
    finally:
        get_database(folder).close()
        config._explicit = old_explicit
        Task._current = old_task
        if old_env is None:
            os.environ.pop(config.ENV_STORE, None)
        else:
            os.environ[config.ENV_STORE] = old_env


class _Agents:
    """`labpipe agent` processes this scenario started (each its own session, so its group is its own)."""

    def __init__(self, db, workdir: Path):
        self.db = db
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def start(self, queue: str, workers: int, lease: float, offset: float = 0.0, wait: bool = True) -> subprocess.Popen:
        env = dict(os.environ)
        env[ENV_OFFSET] = repr(offset)
        log = open(self.workdir / f"agent-{len(self.procs)}.log", "w")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "labpipe.agent", "--queue", queue, "--workers", str(workers),
             "--lease", str(lease), "--grace", "1"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        if wait:
            self.wait_serving(proc, workers)
        return proc

    def wait_serving(self, proc: subprocess.Popen, workers: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.workers_of(proc)) < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent {proc.pid} did not start serving (exit {proc.poll()}); see {self.workdir}")
            time.sleep(0.02)

    def workers_of(self, proc: subprocess.Popen) -> list[str]:
        """Ids of the registered, live workers whose parent is this agent."""
        return [w["id"] for w in leases.live_workers(self.db, 10) if _parent(w["pid"]) == proc.pid]

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGCONT)
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # the agent, and any worker of it still there
            p.wait(5)


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _held(db, worker_ids) -> set[Lease]:
    """The leases of the runs these workers hold now."""
    out = set()
    for w in worker_ids:
        for task_id in leases.worker_tasks(db, w):
            lease = leases.current_lease(db, task_id)
            if lease is not None and lease.owner == w:
                out.add(lease)
    return out


def _released(db, run: Lease) -> bool:
    return leases.current_lease(db, run.task_id) != run


def _log_lines(path: Path) -> list[tuple[str, int, int]]:
    """(tag, attempt, worker pid) of each line the tasks appended."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        tag, attempt, worker = line.split()
        out.append((tag, int(attempt), int(worker)))
    return out


def _children(pid: int) -> set[int]:
    """Pids of the live processes whose parent is `pid` (an agent's workers, registered or starting)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent(int(entry)) == pid:
            out.add(int(entry))
    return out


# -- scenarios -------------------------------------------------------------------------------------


def kills(workdir: Path, full: bool) -> dict:
    """Agents × workers serving N tasks while K kills hit single workers, agents, and agents with their workers."""
    agents_n, per_agent = (4, 2) if full else (2, 2)
    n_tasks, n_kills = (1000, 60) if full else (150, 9)
    lease = 2.0
    log = workdir / "runs.log"
    rng = random.Random(9)
    with _store(workdir / "store") as db:
        db.connection()
        agents = _Agents(db, workdir)
        try:
            for _ in range(agents_n):
                agents.start("chaos", per_agent, lease, wait=False)
            for p in agents.procs:
                agents.wait_serving(p, per_agent)
            work = [Task.create_function_task(chaos_work, log=str(log), tag=f"t{i}", seconds=rng.uniform(0.01, 0.06),
                                              retry_on_failure=5) for i in range(n_tasks)]
            tags = {t.id: f"t{i}" for i, t in enumerate(work)}
            start = time.monotonic()
            for t in work:
                Task.enqueue(t, queue_name="chaos")
            ids = list(tags)
            # spread over the first two thirds of the work: a kill that finds no victim (agents restarting)
            # is tried again each round, and must still land before the work runs out
            thresholds = [int(n_tasks * (0.05 + 0.6 * i / n_kills)) for i in range(n_kills)]
            kinds = Counter()
            victims: set[tuple[str, str, int]] = set()
            killed: set[int] = set()  # worker pids killed, or orphaned by their agent's kill
            pending: list[tuple[tuple[str, str, int], float, str]] = []
            hung: list[tuple[subprocess.Popen, set, float]] = []  # SIGSTOPped agents, until their runs are released
            releases: dict[str, list[float]] = {kind: [] for kind in KILL_KINDS}
            deadline = start + (600 if full else 60)
            done = 0
            while time.monotonic() < deadline:
                states = tasks.task_states(db, ids)
                done = sum(1 for s in states.values() if s[0] in TERMINAL)
                now = time.monotonic()
                for entry in list(pending):
                    if _released(db, entry[0]):
                        releases[entry[2]].append(now - entry[1])
                        pending.remove(entry)
                for agent, held, t_stop in list(hung):  # released (or given up on): now kill it for good
                    if all(_released(db, run) for run in held) or now - t_stop > lease + 10:
                        hung.remove((agent, held, t_stop))
                        os.killpg(agent.pid, signal.SIGKILL)
                        agent.wait(5)
                        agents.start("chaos", per_agent, lease, wait=False)
                if done == n_tasks and not pending:
                    break
                if thresholds and done >= thresholds[0]:
                    kind = KILL_KINDS[sum(kinds.values()) % len(KILL_KINDS)]
                    outcome = _kill(agents, db, kind, rng, per_agent, lease, killed, {a.pid for a, _, _ in hung})
                    if outcome is not None:  # else tried again on the next round
                        thresholds.pop(0)
                        held, agent = outcome
                        kinds[kind] += 1
                        victims |= held
                        t_kill = time.monotonic()
                        pending += [(run, t_kill, kind) for run in held]
                        if kind == "agent_hung":
                            hung.append((agent, held, t_kill))
                time.sleep(0.02)
            elapsed = time.monotonic() - start
            states = tasks.task_states(db, ids)
            final = {r.id: r for r in (Task.get_task(task_id=i).data for i in ids)}
        finally:
            agents.stop_all()
    all_releases = [x for r in releases.values() for x in r]
    by_tag: dict[str, list[tuple[int, int]]] = {}
    for tag, attempt, worker in _log_lines(log):
        by_tag.setdefault(tag, []).append((attempt, worker))
    lost = double = reruns = 0
    for tid, row in final.items():
        runs = by_tag.get(tags[tid], [])
        if row.status != "completed" or row.attempt not in [a for a, _ in runs]:
            lost += 1  # not completed, or completed without its body having run
        # A body whose worker was killed before it recorded the end runs again (at least once, by
        # design); two bodies finished under workers nobody killed would be a double completion.
        double += len([w for _, w in runs if w not in killed]) > 1
        reruns += max(0, len(runs) - 1)
    return {
        "tasks": n_tasks, "workers": agents_n * per_agent, "kills": sum(kinds.values()),
        **{f"{kind}_kills": kinds[kind] for kind in KILL_KINDS},
        "runs_hit": len(victims), "lost": lost, "double_completed": double,
        "bodies_rerun_after_a_kill": reruns, "failed": sum(1 for s in states.values() if s[0] == "failed"),
        "unreleased": len(pending), "max_release_s": round(max(all_releases, default=0.0), 2),
        "median_release_s": round(sorted(all_releases)[len(all_releases) // 2], 2) if all_releases else 0.0,
        **{f"max_release_s_{kind}": round(max(r, default=0.0), 2) for kind, r in releases.items()},
        "lease_s": lease, "release_limit_s": lease + 2.0, "elapsed_s": round(elapsed, 1),
    }


KILL_KINDS = ("worker", "agent", "agent_with_workers", "agent_hung")


def _kill(agents: _Agents, db, kind: str, rng: random.Random, per_agent: int, lease: float, killed: set[int],
          hung: set[int]) -> tuple[set, subprocess.Popen] | None:
    """One kill of `kind` (an agent_hung one is SIGSTOPped: alive, silent; the caller kills it later);
    returns (the runs the victim held, before and right after; the agent hit), or None if there was no
    victim; adds the worker pids it killed, orphaned or stopped to `killed`."""
    live = [p for p in agents.alive() if p.pid not in hung and agents.workers_of(p)]
    if not live or (kind == "agent_hung" and len(live) < 2):  # a hung agent needs another one to notice
        return None
    agent = rng.choice(live)
    workers = agents.workers_of(agent)
    if kind == "worker":
        busy = [w for w in workers if leases.worker_tasks(db, w)] or workers
        victim = rng.choice(busy)
        held = _held(db, [victim])
        killed.add(int(victim.rsplit(":", 1)[1]))
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
        return held | _held(db, [victim]), agent
    held = _held(db, workers)
    killed.update(_children(agent.pid), (int(w.rsplit(":", 1)[1]) for w in workers))
    if kind == "agent_hung":  # pids alive, heartbeats stopped: only watching them tells
        _freeze_outside_a_transaction(agent, db.path)
        return held | _held(db, workers), agent
    if kind == "agent":
        agent.kill()  # its workers get SIGTERM from the kernel and re-queue their tasks on the way out
    else:
        os.killpg(agent.pid, signal.SIGKILL)  # agent and workers at once: only their leases tell
    held |= _held(db, workers)
    agent.wait(5)
    agents.start("chaos", per_agent, lease, wait=False)  # what a service manager does
    return held, agent


def _freeze_outside_a_transaction(agent: subprocess.Popen, path: Path) -> None:
    """SIGSTOP an agent and its workers at a moment none of them holds the store's write lock.

    A process frozen inside a write transaction keeps SQLite's lock, and every writer of the store
    waits (up to the 10 s busy timeout, then fails): no lease design helps there, so it is not what
    this scenario measures."""
    for _ in range(50):
        os.killpg(agent.pid, signal.SIGSTOP)
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.killpg(agent.pid, signal.SIGCONT)
            time.sleep(0.005)
        finally:
            probe.close()


def poison_storm(workdir: Path, full: bool) -> dict:
    """Tasks that kill their worker, then good tasks, on one agent: poison failed by name, the rest runs."""
    n_poison, n_good, workers = (20, 10, 2) if full else (6, 10, 2)
    log = workdir / "good.log"
    with _store(workdir / "store") as db:
        db.connection()
        agents = _Agents(db, workdir)
        try:
            agent = agents.start("storm", workers, 2.0)
            poison = [Task.create_function_task(chaos_poison, task_name=f"poison{i}", retry_on_failure=5) for i in range(n_poison)]
            good = [Task.create_function_task(chaos_work, log=str(log), tag=f"g{i}", seconds=0.01) for i in range(n_good)]
            start = time.monotonic()
            for t in [*poison, *good]:
                Task.enqueue(t, queue_name="storm")
            ids = [t.id for t in [*poison, *good]]
            deadline = start + (180 if full else 40)
            while time.monotonic() < deadline:
                if all(s[0] in TERMINAL for s in tasks.task_states(db, ids).values()):
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - start
            alive = agent.poll() is None
            rows = [Task.get_task(task_id=t.id).data for t in poison]
            good_rows = [Task.get_task(task_id=t.id).data for t in good]
        finally:
            agents.stop_all()
    named = sum(1 for r in rows if r.status == "failed" and r.id in r.status_message and "worker lost 3 times" in r.status_message)
    return {
        "poison_tasks": n_poison, "poison_failed_naming_the_task": named,
        "poison_max_attempts": max(r.attempt for r in rows),
        "good_tasks": n_good, "good_completed": sum(1 for r in good_rows if r.status == "completed"),
        "agent_alive_after": alive, "elapsed_s": round(elapsed, 1),
    }


def _bad_store(kind: str, folder: Path) -> tuple[Path, list[str]]:
    """Make a store of `kind` under `folder`; returns (the store path, the agent command line)."""
    store = folder / "store"
    command = [sys.executable, "-m", "labpipe.agent", "--queue", "q", "--workers", "1"]
    if kind == "path_is_a_file":
        folder.mkdir(parents=True)
        store.write_text("not a folder\n")
    elif kind == "not_sqlite":
        store.mkdir(parents=True, mode=0o700)  # private, as labpipe makes them: only the bad file speaks
        (store / "labpipe.db").write_bytes(b"these are not the bytes of a SQLite database\n" * 100)
    elif kind == "newer_schema":
        with _store(store) as db:
            db.connection().execute("PRAGMA user_version = 999")
    elif kind == "truncated":
        with _store(store) as db:
            for i in range(200):
                Task.create(project_name="truncated", task_name=f"filler{i}").set_parameters({"Args/blob": "x" * 500})
        path = store / "labpipe.db"
        os.truncate(path, path.stat().st_size // 2)
    elif kind == "network_fs":
        store.mkdir(parents=True, mode=0o700)
        mounts = folder / "mounts"
        mounts.write_text(f"server:/export {store} nfs4 rw 0 0\n")
        command = [sys.executable, "-c",
                   "import sys; import labpipe.store.db as d; d.MOUNTS_FILE = sys.argv[1]; "
                   "from labpipe.agent.commands import agent_command; agent_command(['--queue', 'q', '--workers', '1'])",
                   str(mounts)]
    return store, command


BAD_STORES = ("not_sqlite", "truncated", "newer_schema", "network_fs", "path_is_a_file")


def bad_stores(workdir: Path, full: bool) -> dict:
    """`labpipe agent` on each kind of bad store: exit code, seconds, lines on stderr."""
    out: dict = {}
    for kind in BAD_STORES:
        store, command = _bad_store(kind, workdir / kind)
        env = dict(os.environ, **{config.ENV_STORE: str(store)})
        start = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        out[f"{kind}_exit"] = proc.returncode
        out[f"{kind}_s"] = round(time.monotonic() - start, 2)
        out[f"{kind}_stderr_lines"] = len([ln for ln in err.splitlines() if ln.strip()])
    out["max_s"] = max(v for k, v in out.items() if k.endswith("_s"))
    return out


def clock_steps(workdir: Path, full: bool) -> dict:
    """Clocks that disagree: +30 s between agents (no healthy run failed or re-run), and an owner 600 s
    ahead that is killed or hung (its task released within the lease + 2 s)."""
    n_healthy, seconds, lease = (20, 2.0, 0.5) if full else (4, 1.5, 0.5)
    log = workdir / "starts.log"
    with _store(workdir / "store") as db:
        db.connection()
        agents = _Agents(db, workdir)
        try:
            behind = agents.start("clock", 1, lease, wait=False)
            ahead = agents.start("clock", 1, lease, offset=30.0, wait=False)
            for p in (behind, ahead):
                agents.wait_serving(p, 1)
            healthy = [Task.create_function_task(chaos_started, log=str(log), tag=f"h{i}", seconds=seconds, retry_on_failure=2)
                       for i in range(n_healthy)]
            for t in healthy:
                Task.enqueue(t, queue_name="clock")
            ids = [t.id for t in healthy]
            deadline = time.monotonic() + 30 + n_healthy * seconds
            while time.monotonic() < deadline and not all(s[0] in TERMINAL for s in tasks.task_states(db, ids).values()):
                time.sleep(0.05)
            rows = [Task.get_task(task_id=i).data for i in ids]
            starts = Counter(tag for tag, _, _ in _log_lines(log))
            figures = {
                "healthy_runs": n_healthy, "healthy_failed": sum(1 for r in rows if r.status != "completed"),
                "healthy_rerun": sum(1 for n in starts.values() if n > 1),
                "both_clocks_served": len({r.runtime.get("worker") for r in rows}) == 2, "lease_s": lease,
            }
            ahead.send_signal(signal.SIGTERM)
            ahead.wait(10)
            for how in ("killed", "hung"):
                far = agents.start("far", 1, lease, offset=600.0)
                (worker,) = agents.workers_of(far)
                task = Task.create_function_task(chaos_started, log=str(workdir / f"{how}.log"), tag=how, seconds=30,
                                                 retry_on_failure=1)
                Task.enqueue(task, queue_name="far")
                while not (workdir / f"{how}.log").exists():
                    time.sleep(0.01)
                run = Lease(task.id, worker, leases.current_lease(db, task.id).attempt)
                os.killpg(far.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
                t0 = time.monotonic()
                while not _released(db, run) and time.monotonic() - t0 < 30:
                    time.sleep(0.02)  # the 'behind' agent (0 s offset) is the one to notice
                figures[f"{how}_owner_600s_ahead_release_s"] = round(time.monotonic() - t0, 2)
                os.killpg(far.pid, signal.SIGKILL)
                far.wait(5)
                with contextlib.suppress(sqlite3.Error, Exception):
                    task.mark_stopped()
        finally:
            agents.stop_all()
    figures["release_limit_s"] = lease + 2.0
    return figures


SCENARIOS = {"kills": kills, "poison_storm": poison_storm, "bad_stores": bad_stores, "clock_steps": clock_steps}

TARGETS = {
    "kills": "0 lost, 0 double-completed, every task a killed worker or agent held released within the lease + 2 s (max)",
    "poison_storm": "every poison task failed naming itself after 3 worker deaths; the agent stays up; 10 of 10 good tasks run",
    "bad_stores": "each bad store (not SQLite, truncated, newer schema, network fs, a file): exit 1, one stderr line, within 2 s",
    "clock_steps": "+30 s between agents: 0 healthy runs failed or re-run; an owner 600 s ahead killed or hung: released within lease + 2 s",
}
