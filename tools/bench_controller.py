"""Benchmark PipelineController (issue 5's figures), each against a baseline measured in the same run.

    python tools/bench_controller.py [--steps 200] [--plot-steps 100] [--repeat 3] [--png dag.png]

1. A DAG of --steps steps from tasks: one template function task, every step a clone of it with
   parameter overrides (one a `${step.id}` reference to a parent), run with
   `start_locally(run_pipeline_steps_locally=True)`; figure: wall time per step (declaring the steps
   plus the run). The built-in pool is started and warmed first, as a second pipeline in a session
   finds it. Baseline: the same function called --steps times in this process, each result pickled
   to a file and recorded with one sqlite insert (committed): the least any engine that keeps its
   results on disk pays per step.
2. Drawing a stored --plot-steps-node run to PNG the way `labpipe plot` does
   (`labpipe.pipeline.render.plot_pipeline`), in a fresh process, matplotlib import included; and
   the `labpipe plot` command itself. Each drawing uses a run never drawn before (a finished run's
   picture is stored and reused). Baseline: a fresh process importing matplotlib.pyplot and saving
   an empty figure.

Memory is warmed once (a few hundred MB allocated and touched) before anything is timed; every
figure is the median of --repeat runs. Prints figures only: no asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MS_PER_STEP = 15.0
TARGET_PLOT_S = 2.0


def bench_step(x: int = 0, parent: str = ""):
    """The template's function: trivial, so the figure is the engine's cost per step."""
    return x + 1


def warm_memory(mb: int = 300) -> None:
    """Allocate and touch `mb` MB once, so first-touch page faults do not land in a timed run."""
    block = bytearray(mb << 20)
    view = memoryview(block)
    page = b"\x01" * 4096
    for offset in range(0, len(block), 4096):
        view[offset:offset + 4096] = page
    del view, block


def dag_shape(steps: int, seed: int = 1) -> list[list[int]]:
    """Parents of each step: mostly recent steps (like a real pipeline), some fan-in, a few long edges."""
    rng = random.Random(seed)
    shape = []
    for i in range(steps):
        parents = rng.sample(range(max(0, i - 8), i), k=min(i, rng.randint(1, 2))) if i else []
        if i > 20 and rng.random() < 0.05:
            parents.append(rng.randrange(0, i - 10))
        shape.append(list(dict.fromkeys(parents)))
    return shape


def depth(shape: list[list[int]]) -> int:
    level: list[int] = []
    for parents in shape:
        level.append(1 + max((level[p] for p in parents), default=0))
    return max(level, default=0)


def run_controller(template_id: str, shape: list[list[int]], name: str) -> tuple[float, float, str]:
    """Declare and run one pipeline; returns (seconds declaring, seconds running, pipeline id)."""
    from labpipe import PipelineController

    t0 = time.perf_counter()
    pipe = PipelineController(name=name, project="bench", version="1.0")
    pipe.add_parameter("offset", 1)
    for i, parents in enumerate(shape):
        override = {"kwargs/x": "${pipeline.offset}" if i == 0 else i}
        if parents:
            override["kwargs/parent"] = f"${{step_{parents[0]:03d}.id}}"
        pipe.add_step(f"step_{i:03d}", base_task_id=template_id, parents=[f"step_{p:03d}" for p in parents[1:]],
                      parameter_override=override)
    t1 = time.perf_counter()
    ok = pipe.start_locally(run_pipeline_steps_locally=True)
    t2 = time.perf_counter()
    if not ok:
        raise SystemExit(f"pipeline {pipe.id} failed: {pipe.task.get_status_message()}")
    return t1 - t0, t2 - t1, pipe.id


def baseline_steps(steps: int, folder: Path) -> float:
    """The same calls in-process, each result pickled to a file and one committed sqlite insert."""
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS results (step TEXT PRIMARY KEY, path TEXT, created REAL)")
    conn.execute("DELETE FROM results")
    t0 = time.perf_counter()
    for i in range(steps):
        value = bench_step(x=i, parent=f"step_{max(0, i - 1):03d}")
        path = folder / f"step_{i:03d}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        conn.execute("INSERT INTO results VALUES (?, ?, ?)", (f"step_{i:03d}", str(path), time.time()))
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


PLOT = """
import json, sys, time
t0 = time.perf_counter()
from labpipe.pipeline.render import plot_pipeline
png = plot_pipeline(sys.argv[1], sys.argv[2])
print(json.dumps({"total": time.perf_counter() - t0, "bytes": len(png)}))
"""

EMPTY_FIGURE = """
import io, json, time
t0 = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig = plt.figure()
fig.savefig(io.BytesIO(), format="png")
print(json.dumps({"total": time.perf_counter() - t0}))
"""


def fresh(argv: list[str]) -> tuple[dict | None, float]:
    """Run a command in a fresh process; its JSON report (if it prints one) and its wall time."""
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return report, wall


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--plot-steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--png", default="", help="also keep one drawn PNG here")
    parser.add_argument("--store", default="", help="store folder (default: a temporary one, deleted after)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="labpipe-bench-controller-"))
    store = Path(args.store) if args.store else scratch / "store"
    os.environ["LABPIPE_STORE"] = str(store)  # before labpipe is imported; children inherit it
    sys.path.insert(0, str(REPO))
    try:
        import labpipe
        from labpipe import Task
        from labpipe.agent.pool import ensure_pool

        labpipe.set_store(store)
        warm_memory()
        cores = os.cpu_count() or 1
        pool = ensure_pool({"default": cores})
        template = Task.create_function_task(bench_step, task_name="bench step", project_name="bench", return_values=["y"])
        run_controller(template.id, dag_shape(20), "warmup")  # workers forked and warm; not counted

        # 1. the controller at scale, interleaved with its baseline so noise hits both alike
        shape = dag_shape(args.steps)
        declare, run, base = [], [], []
        for r in range(args.repeat):
            d, e, _ = run_controller(template.id, shape, f"bench {args.steps} steps")
            declare.append(d)
            run.append(e)
            base.append(baseline_steps(args.steps, scratch / f"baseline-{r}"))
        total_ms = 1000 * median([d + e for d, e in zip(declare, run, strict=True)]) / args.steps
        base_ms = 1000 * median(base) / args.steps

        # 2. drawing stored runs: each drawing needs a run not drawn before
        plot_shape = dag_shape(args.plot_steps)
        runs = [run_controller(template.id, plot_shape, f"bench {args.plot_steps} steps")
                for _ in range(2 * args.repeat)]
        plot_ms_per_step = 1000 * median([d + e for d, e, _ in runs]) / args.plot_steps
        pool.stop()

        fresh([sys.executable, "-c", EMPTY_FIGURE])  # warm the disk cache and matplotlib's font cache
        drawn, cli, empty = [], [], []
        labpipe_cmd = shutil.which("labpipe")
        for i in range(args.repeat):
            out = scratch / f"dag-{i}.png"
            drawn.append(fresh([sys.executable, "-c", PLOT, runs[i][2], str(out)]))
            if labpipe_cmd:
                cli_out = scratch / f"dag-cli-{i}.png"
                cli.append(fresh([labpipe_cmd, "--store", str(store), "plot", runs[args.repeat + i][2], "-o", str(cli_out)])[1])
            empty.append(fresh([sys.executable, "-c", EMPTY_FIGURE]))
        if args.png:
            shutil.copyfile(scratch / "dag-0.png", args.png)

        plot_in = median([r["total"] for r, _ in drawn])
        plot_wall = median([w for _, w in drawn])
        empty_in = median([r["total"] for r, _ in empty])
        empty_wall = median([w for _, w in empty])

        row = "  {:<58} {}"
        print(f"PipelineController, {args.steps}-step DAG from tasks (critical path {depth(shape)} steps), "
              f"{cores} pool workers, median of {args.repeat}:")
        print(row.format(f"declare (add_step x {args.steps})", f"{1000 * median(declare) / args.steps:8.3f} ms/step"))
        print(row.format("start_locally(run_pipeline_steps_locally=True), to the end", f"{1000 * median(run) / args.steps:8.3f} ms/step"))
        print(row.format("total", f"{total_ms:8.3f} ms/step  "
                         f"({median([d + e for d, e in zip(declare, run, strict=True)]):.2f} s for {args.steps} steps)"))
        print(row.format("baseline: call + pickle to file + sqlite insert, in-process", f"{base_ms:8.3f} ms/step"))
        print(f"  ratio to baseline {total_ms / base_ms:.0f}x;  target <= {TARGET_MS_PER_STEP:.0f} ms/step: "
              f"{'met' if total_ms <= TARGET_MS_PER_STEP else 'MISSED'}"
              f"  ({args.plot_steps}-step runs, made for the drawings: {plot_ms_per_step:.3f} ms/step)")
        print(f"Drawing a stored {args.plot_steps}-node run to PNG in a fresh process, median of {args.repeat}:")
        print(row.format("plot_pipeline, imports included", f"{plot_in:8.3f} s  ({drawn[0][0]['bytes'] / 1e3:.0f} kB PNG)"))
        print(row.format("same, whole process (python start included)", f"{plot_wall:8.3f} s"))
        if cli:
            print(row.format("`labpipe plot ID -o dag.png`, whole process", f"{median(cli):8.3f} s"))
        print(row.format("baseline: import matplotlib.pyplot + save empty figure", f"{empty_in:8.3f} s"))
        print(row.format("baseline, whole process", f"{empty_wall:8.3f} s"))
        print(f"  ratio to baseline {plot_in / empty_in:.2f} in process, {plot_wall / empty_wall:.2f} whole process;  "
              f"target <= {TARGET_PLOT_S:.0f} s: {'met' if plot_in <= TARGET_PLOT_S else 'MISSED'}")
    finally:
        if not args.store:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
