"""Benchmark: drawing a 100-step pipeline DAG to PNG in a fresh process, matplotlib import included.

Usage: python tools/bench_dag_plot.py [--steps 100] [--repeat 5] [--out /tmp/dag.png]

Each measurement runs in a new interpreter, because the import of matplotlib is most of the cost a
pipeline pays the first time it draws its graph. The baseline, measured in the same run the same
way, is the least any matplotlib PNG costs: `import matplotlib.pyplot` and save an empty figure.
Target: the DAG drawing takes at most 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD_DAG = """
import random
from labpipe.pipeline.dag import DAG, NODE_STATUSES, Node

def build(steps):
    rng = random.Random(1)
    dag = DAG()
    for i in range(steps):
        # Mostly local dependencies (like a real pipeline), some fan-in, a few long edges.
        parents = rng.sample(range(max(0, i - 8), i), k=min(i, rng.randint(1, 2))) if i else []
        if i > 20 and rng.random() < 0.05:
            parents.append(rng.randrange(0, i - 10))
        dag.add(Node(f"step_{i:03d}_process", [f"step_{p:03d}_process" for p in dict.fromkeys(parents)],
                     status=rng.choice(NODE_STATUSES), started=0.0, completed=rng.random() * 100))
    return dag
"""

DRAW_DAG = (
    """
import json, sys, time
t0 = time.perf_counter()
from labpipe.pipeline.dag_plot import plot_dag
"""
    + BUILD_DAG
    + """
steps, out = int(sys.argv[1]), sys.argv[2] or None
dag = build(steps)
t1 = time.perf_counter()
png = plot_dag(dag, out, title=f"bench: {steps} steps")
t2 = time.perf_counter()
print(json.dumps({"total": t2 - t0, "draw": t2 - t1, "bytes": len(png)}))
"""
)

BASELINE = """
import io, json, time
t0 = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig = plt.figure()
fig.savefig(io.BytesIO(), format="png")
print(json.dumps({"total": time.perf_counter() - t0}))
"""


def run(code: str, *args: str) -> tuple[dict, float]:
    """Run `code` in a fresh interpreter; its JSON report and the process's whole wall time."""
    env = dict(
        os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", MPLBACKEND="Agg"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    )
    wall = time.perf_counter() - start
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="", help="also write the DAG's PNG here")
    args = parser.parse_args()

    run(BASELINE)  # warm the disk cache and matplotlib's font cache; not counted
    dag_runs, base_runs = [], []
    for _ in range(args.repeat):
        # Interleaved, so that a noisy neighbour slows both sides alike.
        dag_runs.append(run(DRAW_DAG, str(args.steps), args.out))
        base_runs.append(run(BASELINE))

    # Once matplotlib is imported (a long-lived controller drawing its graph again and again).
    sys.path.insert(0, str(REPO))
    from labpipe.pipeline.dag_plot import plot_dag

    namespace: dict = {}
    exec(BUILD_DAG, namespace)
    dag = namespace["build"](args.steps)
    plot_dag(dag)
    warm = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        plot_dag(dag, title=f"bench: {args.steps} steps")
        warm.append(time.perf_counter() - start)

    def median(runs: list[tuple[dict, float]], key: str) -> float:
        return statistics.median(r[0][key] for r in runs)

    dag_total, base_total = median(dag_runs, "total"), median(base_runs, "total")
    dag_wall = statistics.median(w for _, w in dag_runs)
    base_wall = statistics.median(w for _, w in base_runs)
    print(f"DAG of {args.steps} steps, median of {args.repeat} fresh processes:")
    print(
        f"  import + build + draw to PNG   {dag_total:6.3f} s   (plot_dag call incl. matplotlib import {median(dag_runs, 'draw'):.3f} s, "
        f"again in the same process {statistics.median(warm):.3f} s, {dag_runs[0][0]['bytes'] / 1e3:.0f} kB)"
    )
    print(f"  whole process (python start)   {dag_wall:6.3f} s")
    print("baseline: import matplotlib.pyplot + save an empty figure:")
    print(f"  in process                     {base_total:6.3f} s")
    print(f"  whole process (python start)   {base_wall:6.3f} s")
    print(
        f"ratio DAG / baseline: {dag_total / base_total:.2f} in process, {dag_wall / base_wall:.2f} whole process"
    )
    print(f"target <= 2 s: {'met' if dag_total <= 2.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
