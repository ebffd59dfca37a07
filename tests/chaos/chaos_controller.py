"""Chaos for pipeline controllers: a local controller SIGKILLed mid-run, again and again, then run to the end.

The pipeline is a chain of cached steps, each recording in an append-only log when its body starts. A
controller (the user's script, `run_locally`) is killed at a random moment; the next run of the same
script must reuse every step that had completed (a cache hit), never run its body again, and the last
run must complete with the right result. Figures: kills, steps whose body ran again after their task
had completed, runs that failed for another reason, and whether the final result is right.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import labpipe
from labpipe import Task, config

#: steps per kill: each run is killed after 1-3 step bodies started, so the chain outlasts every kill
STEPS_PER_KILL = 3

SCRIPT = textwrap.dedent("""
    import os, sys
    from labpipe import PipelineDecorator

    LOG = sys.argv[1]

    @PipelineDecorator.component(return_values=["value"], cache=True)
    def step(x: int, i: int, log: str):
        import os, time
        with open(log, "a") as fh:   # O_APPEND: one whole line per write, across processes
            fh.write(f"start {i}\\n")
        time.sleep(0.05)
        return x + i

    @PipelineDecorator.pipeline(name="killable chain", project="chaos", version="1")
    def chain(n: int = int(sys.argv[2])):
        value = 0
        for i in range(n):
            value = step(value, i, LOG)
        print("result", int(value))

    if __name__ == "__main__":
        PipelineDecorator.run_locally(workers=1)
        chain()
""")


def _completed_steps() -> set[int]:
    """The step indexes whose task completed (from the store: what a rerun must reuse)."""
    done = set()
    for t in Task.get_tasks(project_name="chaos", task_filter={"status": ["completed"]}):
        if t.task_type == "controller":
            continue
        i = t.get_parameters(cast=True).get("kwargs/i")
        if i is not None:
            done.add(int(i))
    return done


def controller_kills(workdir: Path, full: bool) -> dict:
    """Kill the controller `kills` times at random moments, rerun after each; count bodies run again."""
    kills = 20 if full else 4
    steps = STEPS_PER_KILL * kills + 2
    store = workdir / "store"
    script = workdir / "chain.py"
    script.write_text(SCRIPT)
    log = workdir / "bodies.log"
    old_store, old_explicit = os.environ.get(config.ENV_STORE), config._explicit
    os.environ[config.ENV_STORE] = str(store)
    labpipe.set_store(store)
    env = dict(os.environ)
    rng = random.Random(9)
    rerun_after_completed, other_failures, killed = 0, 0, 0
    try:
        for attempt in range(kills + 1):
            done_before = _completed_steps() if store.exists() else set()
            starts_before = len(log.read_text().splitlines()) if log.exists() else 0
            proc = subprocess.Popen([sys.executable, str(script), str(log), str(steps)], env=env, cwd=workdir,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
            last = attempt == kills
            if not last:
                _wait_for_bodies(log, starts_before + rng.randint(1, STEPS_PER_KILL), proc)
                time.sleep(rng.uniform(0.0, 0.06))  # anywhere in that step: running, persisting, or just done
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)  # the controller only: its pool workers must follow it
                    killed += 1
            try:
                out, _err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _err = proc.communicate()
            _wait_for_workers_gone(proc.pid)
            new = log.read_text().splitlines()[starts_before:] if log.exists() else []
            rerun_after_completed += sum(1 for line in new if int(line.split()[1]) in done_before)
            if last:
                final_ok = proc.returncode == 0 and f"result {sum(range(steps))}" in out
            elif proc.returncode not in (-signal.SIGKILL, 0):
                other_failures += 1
    finally:
        if old_store is None:
            os.environ.pop(config.ENV_STORE, None)
        else:
            os.environ[config.ENV_STORE] = old_store
        config._explicit = old_explicit
    return {"kills": killed, "completed_steps_rerun": rerun_after_completed, "other_failures": other_failures,
            "final_run_ok": final_ok}


def _wait_for_bodies(log: Path, count: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until `count` step bodies have started in all (or the run ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= count:
            return
        time.sleep(0.01)


def _wait_for_workers_gone(session: int, timeout: float = 10.0) -> None:
    """The killed controller's pool workers end on their own (lifeline); wait for them, then make sure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _session_pids(session):
            return
        time.sleep(0.05)
    for pid in _session_pids(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _session_pids(session: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # fields[3]: the session id
            pids.append(int(entry))
    return pids


SCENARIOS = {"controller_kills": controller_kills}
TARGETS = {"controller_kills": "0 completed steps re-run over 20 controller kills; the last run completes with the right result"}
CHECKS = {"controller_kills": lambda f: f["completed_steps_rerun"] == 0 and f["other_failures"] == 0 and f["final_run_ok"]}
