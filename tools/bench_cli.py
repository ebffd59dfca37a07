"""Benchmark `labpipe show RUN` of a 500-step pipeline run as a whole process (issue 11: <= 200 ms).

    python tools/bench_cli.py [--steps 500] [--runs 9]

Builds, in a temporary store, a finished pipeline run of N steps (a chain, each step a completed
task with two parameters and one artifact, every tenth one cached, one failed) through the store's
own verbs, then times `python -m labpipe.cli show RUN` (and `--json`) as fresh processes: min and
median of several runs after a warm-up. Baselines measured in the same run: `show` of a plain task
(no steps) and `python -c "import labpipe.cli"`, so the figure says what the steps themselves cost.
PYTHONDONTWRITEBYTECODE is dropped for the timed processes: an installed labpipe has its byte code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(store: Path, steps: int) -> tuple[str, str]:
    """A finished N-step run and one plain task in `store`; their ids."""
    import labpipe
    from labpipe import Task
    from labpipe.store import pipelines, tasks
    from labpipe.store.db import get_database

    labpipe.set_store(store)
    db = get_database()
    run = tasks.create_task(db, name="bench", project="bench", type="controller", run_of="bench",
                            runtime={"pipeline_name": "bench", "pipeline_version": "1.0.0"}, system_tags=["pipeline"])
    nodes, now = [], time.time()
    for i in range(steps):
        t = Task.create(project_name="bench", task_name="step")
        t.set_parameters({"kwargs/x": i, "kwargs/scale": 0.5})
        t.upload_artifact("result", i)
        status = "failed" if i == steps - 1 else "completed"
        t.mark_failed(status_message="ValueError: bad input") if status == "failed" else t.mark_completed()
        tasks.update_task(db, t.id, parent=run.id)
        nodes.append({"name": "step" if i == 0 else f"step_{i}", "seq": i, "parents": [] if i == 0 else [nodes[-1]["name"]],
                      "task": t.id, "status": "cached" if status == "completed" and i % 10 == 5 else status,
                      "started": now + i, "completed": now + i + 0.25,
                      "error": "ValueError: bad input" if status == "failed" else None})
    pipelines.save_nodes(db, run.id, nodes)
    Task.get_task(task_id=run.id).mark_failed(status_message="step failed")
    plain = Task.create(project_name="bench", task_name="plain")
    plain.set_parameters({"Args/lr": 0.1})
    plain.mark_completed()
    return run.id, plain.id


def time_process(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall seconds of `cmd` as a fresh process, `runs` times after one warm-up (output discarded)."""
    out = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()[-500:]}")
        if i:
            out.append(elapsed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        store = Path(tmp) / "store"
        run_id, plain_id = build(store, args.steps)
        # as installed: byte code cached (the warm-up writes it), not compiled afresh by every run
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env = {**env, "LABPIPE_STORE": str(store),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        cli = [sys.executable, "-m", "labpipe.cli"]
        cases = [
            (f"show RUN ({args.steps} steps)", cli + ["show", run_id[:8]]),
            (f"show RUN --json ({args.steps} steps)", cli + ["show", run_id[:8], "--json"]),
            ("baseline: show of a plain task", cli + ["show", plain_id[:8]]),
            ("baseline: import labpipe.cli", [sys.executable, "-c", "import labpipe.cli"]),
        ]
        results = {name: time_process(cmd, env, args.runs) for name, cmd in cases}
    base = statistics.median(results["baseline: show of a plain task"])
    print(f"{'command (whole process, wall)':44} {'min ms':>8} {'median ms':>10} {'x plain show':>13}")
    for name, samples in results.items():
        med = statistics.median(samples)
        print(f"{name:44} {min(samples) * 1000:8.1f} {med * 1000:10.1f} {med / base:13.2f}")
    print(f"target: show RUN <= 200 ms; {args.runs} runs after one warm-up")


if __name__ == "__main__":
    main()
