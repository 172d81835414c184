"""Start-up: importing servesim and loading its whole hardware catalog, in a fresh process.

What a user waits for before the first simulated event of ``servesim run`` or a
notebook's ``import``: the engine, config and policy modules (through
``simulator.runner``), every profile of the catalog validated (GPUs, CPUs,
links, nodes, models) and the committed calibrations read. Each repeat runs in
a new interpreter, so nothing is cached between them; the median is reported
against the 1 s target.

Run: python experiments/benchmarks/startup.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from harness import interpreter_description

TARGET_S = 1.0

# Runs in the fresh interpreter; prints the seconds from before the first import to the end.
CHILD = """
import time
started = time.perf_counter()
import simulator.runner
from simulator.hardware import DEFAULT_CATALOG, PROFILE_TYPES
from simulator.perf.calibration import load_calibrations
profiles = sum(1 for kind in PROFILE_TYPES for name in DEFAULT_CATALOG.names(kind)
               if DEFAULT_CATALOG.get(kind, name) is not None)
load_calibrations()
print(time.perf_counter() - started, profiles)
"""


def measure_once(repo: Path) -> tuple[float, int]:
    """Seconds of one fresh interpreter's import and catalog load, and the profiles it loaded."""
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=repo, check=True, capture_output=True, text=True)
    seconds, profiles = out.stdout.split()
    return float(seconds), int(profiles)


def main() -> None:
    parser = argparse.ArgumentParser(description="servesim benchmark: start-up")
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters to time (default 5)")
    parser.add_argument("--json", type=Path, help="write the result as JSON to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    repo = Path(__file__).resolve().parents[2]
    runs = [measure_once(repo) for _ in range(args.repeats)]
    seconds = [s for s, _ in runs]
    median = statistics.median(seconds)
    python = interpreter_description()
    print(f"startup  import + catalog ({runs[0][1]} profiles) + calibrations: median {median:.3f} s "
          f"over {args.repeats} fresh processes (min {min(seconds):.3f}, max {max(seconds):.3f}); "
          f"target {TARGET_S:.1f} s: {'met' if median < TARGET_S else 'NOT met'}")
    print(f"         python: {python}")
    if args.json:
        row = {"benchmark": "startup", "case": "import_catalog", "wall_s": round(median, 3),
               "min_s": round(min(seconds), 3), "max_s": round(max(seconds), 3), "repeats": args.repeats,
               "profiles": runs[0][1], "python": python}
        args.json.write_text(json.dumps([row], indent=2) + "\n")


if __name__ == "__main__":
    main()
