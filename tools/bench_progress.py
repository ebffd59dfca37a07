"""Benchmark what the live progress view costs (issue 11: it adds <= 5% to the 200-step chain).

    python tools/bench_progress.py                 # 200-step chain, 5 rounds
    python tools/bench_progress.py --steps 200 --repeat 7

The chain of tools/bench_pipeline.py (`run_locally()`, every step a task on the built-in pool,
timed around the pipeline call in a fresh process with a fresh store, pool start included), run
with the view off (LABPIPE_PROGRESS=0, the baseline) and on, in the same run, interleaved round by
round so that all three see the same machine:

  plain   LABPIPE_PROGRESS=plain: one line per event on stderr (a pipe), as in CI or a log file;
  live    LABPIPE_PROGRESS=live: the rich live view drawn as on a terminal (forced), into that pipe.

Also the debug chain (plain calls): us per step with the view off and on (plain lines).
Prints the medians and each one's ratio to the baseline. Figures only: no asserts.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import Bench, assert_value  # noqa: E402 - tools/ is not a package

MODES = {"off": "0", "plain": "plain", "live": "live"}
TARGET = 1.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="chain length (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="labpipe-bench-progress-"))
    try:
        b = Bench(root, args.steps, args.repeat)
        n = args.steps
        chain: dict[str, list[float]] = {m: [] for m in MODES}
        debug: dict[str, list[float]] = {"off": [], "plain": []}
        for _ in range(args.repeat):
            for mode, value in MODES.items():
                run = b.case("chain", env={"LABPIPE_PROGRESS": value})
                assert_value([run], n)
                chain[mode].append(run["seconds"])
            for mode in debug:
                run = b.case("debug", env={"LABPIPE_PROGRESS": MODES[mode]}, reps=10)
                debug[mode].append(run["seconds"] - run["plain"])
        base = statistics.median(chain["off"])
        print(f"chain of {n}, run_locally, pool start incl. (median of {args.repeat}, interleaved)")
        print(f"  view off (LABPIPE_PROGRESS=0)        {base:8.3f} s  {base / n * 1000:6.2f} ms/step   baseline")
        for mode in ("plain", "live"):
            value = statistics.median(chain[mode])
            ratio = value / base
            print(f"  view {mode:<5} (LABPIPE_PROGRESS={MODES[mode]:<5}) {value:8.3f} s  {value / n * 1000:6.2f} ms/step   "
                  f"ratio {ratio:.3f}  target <= {TARGET:.2f}  {'OK' if ratio <= TARGET else 'MISS'}")
        off, on = (statistics.median(debug[m]) / n * 1e6 for m in ("off", "plain"))
        print(f"debug chain of {n}: overhead over plain calls, us/step: view off {off:.1f}, plain lines {on:.1f} "
              f"(+{on - off:.1f} us/step)")
        print("  fastest of each (less noise from the other processes on this machine): "
              + ", ".join(f"{m} {min(v):.3f} s" for m, v in chain.items()) + f"; ratio live/off {min(chain['live']) / min(chain['off']):.3f}")
        print(f"  every sample (s): {', '.join(f'{m}={sorted(round(x, 3) for x in v)}' for m, v in chain.items())}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
