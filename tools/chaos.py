"""The reliability matrix at full size: every scenario of `tests/chaos/`, with its figures and target.

    python tools/chaos.py              # every scenario, at the issue's sizes
    python tools/chaos.py --ci         # the sizes CI runs (what `pytest tests/chaos` asserts)
    python tools/chaos.py blobs agents # only the scenarios of these areas
    python tools/chaos.py -k flip      # only scenarios whose name contains "flip"

Each scenario runs real processes against a real store in a temp folder of its own, kills what the
scenario says to kill, and reports plain numbers (0 lost, 0 double-completed, seconds to release a
dead agent's task, files written outside the store, ...). The table prints each scenario's figures
beside its target; the exit status is 1 if any scenario raised or missed its target.

The scenarios live with the tests (`tests/chaos/chaos_<area>.py`, each with `SCENARIOS` and
`TARGETS`), so CI and this tool run the same code at two sizes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

CHAOS_DIR = Path(__file__).resolve().parent.parent / "tests" / "chaos"


def areas() -> list[str]:
    return sorted(p.stem.removeprefix("chaos_") for p in CHAOS_DIR.glob("chaos_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("area", nargs="*", help=f"areas to run (default: all of {', '.join(areas())})")
    parser.add_argument("--ci", action="store_true", help="run at the CI sizes instead of the full ones")
    parser.add_argument("-k", dest="keyword", default="", help="only scenarios whose name contains this")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.area) - set(areas()))
    if unknown:
        parser.error(f"unknown area(s) {', '.join(unknown)}; the areas are {', '.join(areas())}")
    sys.path.insert(0, str(CHAOS_DIR))
    results, failed = [], 0
    for area in args.area or areas():
        module = importlib.import_module(f"chaos_{area}")
        targets = getattr(module, "TARGETS", {})
        checks = getattr(module, "CHECKS", {})
        for name, scenario in module.SCENARIOS.items():
            if args.keyword not in name:
                continue
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"labpipe-chaos-{name}-") as tmp:
                try:
                    figures = scenario(Path(tmp), not args.ci)
                    error = None
                except Exception as exc:  # a scenario that breaks is a finding, reported with the rest
                    figures, error = {}, f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
            check = checks.get(name)
            met = error is None and (check(figures) if check else True)
            failed += not met
            results.append(
                {"area": area, "scenario": name, "seconds": round(time.perf_counter() - t0, 2), "figures": figures,
                 "target": targets.get(name, ""), "met": met, "error": error}
            )
            if not args.json:
                print(_line(results[-1]), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"\n{len(results) - failed} of {len(results)} scenarios met their targets ({'CI' if args.ci else 'full'} sizes)")
    return 1 if failed else 0


def _line(result: dict) -> str:
    mark = "ok  " if result["met"] else "MISS"
    figures = ", ".join(f"{k}={_fmt(v)}" for k, v in result["figures"].items()) or result["error"]
    target = f"\n        target: {result['target']}" if result["target"] else ""
    return f"{mark} {result['area']}/{result['scenario']} ({result['seconds']} s): {figures}{target}"


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
