"""Shared benchmark harness: run cases in fresh processes and report speed and memory.

Each case is an experiment mapping; it runs in its own spawned process so its
peak RSS is its own (``--repeats N``: N times, reporting the median run, the
lower middle one for an even N, with the fastest and slowest). Prints
one line per case and optionally writes a JSON list of ``{"benchmark", "case",
"requests", "wall_s", "requests_per_wall_s", "cpu_s", "requests_per_cpu_s",
"steps_per_s", "peak_rss_mb", "repeats", "min_s", "max_s", "build", "python"}`` (``build``: whether
the engine's hot modules ran compiled, see ``simulator.accel``; ``python``: the interpreter, see
``interpreter_description``: how it was built changed the timings 1.1-1.45x). CPU seconds
are the process's own, so they stay comparable when other jobs share the
machine (wall time then grows, CPU time barely).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def poisson_trace(lengths: pd.DataFrame, requests: int, rate_per_s: float, seed: int, path: Path) -> Path:
    """Write a CSV trace: ``lengths`` rows tiled to ``requests`` rows, Poisson arrival times."""
    rng = np.random.default_rng(seed)
    tiled = np.resize(np.arange(len(lengths)), requests)
    frame = pd.DataFrame({
        "arrived_at": np.cumsum(rng.exponential(1.0 / rate_per_s, requests)),
        "num_prefill_tokens": lengths["prompt"].to_numpy()[tiled],
        "num_decode_tokens": lengths["output"].to_numpy()[tiled]})
    frame.to_csv(path, index=False)
    return path


def interpreter_description() -> str:
    """The running interpreter: version, executable, and whether it runs from a shared libpython.

    Builds of the same CPython version differ in speed: one configured with ``--enable-shared``
    and without profile-guided optimisation (pyenv's default) ran servesim 1.1-1.45x slower than
    Debian's statically linked ``/usr/bin/python3.11`` (see the README's Performance section).
    Whether libpython is shared is read from the process's memory map, where the system has one;
    sysconfig cannot say (Debian's static binary reports its shared sibling's configuration).
    """
    maps = Path("/proc/self/maps")
    linkage = ""
    if maps.exists():
        shared = "libpython" in maps.read_text()
        linkage = ", libpython shared" if shared else ", libpython static"
    executable = Path(sys.executable).resolve()
    return f"{platform.python_implementation()} {platform.python_version()} ({executable}{linkage})"


def _child(experiment: dict[str, Any], queue) -> None:
    from simulator.accel import build_description
    from simulator.config import resolve, validate
    from simulator.hardware import DEFAULT_CATALOG
    from simulator.runner import Simulation

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(experiment))
        started, cpu_started = time.perf_counter(), time.process_time()
        result = Simulation(resolve(validate(experiment, path), path, DEFAULT_CATALOG)).run()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"requests": result.summary["requests"]["arrived"], "wall_s": wall, "cpu_s": cpu,
               "steps": result.summary["sim"]["steps"], "peak_rss_mb": peak_mb,
               "completed": result.summary["requests"]["completed"], "build": build_description(),
               "python": interpreter_description()})


def _run_once(experiment: dict[str, Any]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(experiment, queue))
    process.start()
    out = queue.get()
    process.join()
    return out


def run_case(benchmark: str, case: str, experiment: dict[str, Any], repeats: int = 1) -> dict[str, Any]:
    """Run one case ``repeats`` times, each in a fresh process; the row has the median run's
    times (and the fastest and slowest wall times: this machine's speed drifts)."""
    runs = [_run_once(experiment) for _ in range(repeats)]
    walls = [run["wall_s"] for run in runs]
    out = runs[walls.index(statistics.median_low(walls))]
    row = {"benchmark": benchmark, "case": case, "requests": out["requests"], "wall_s": round(out["wall_s"], 3),
           "requests_per_wall_s": round(out["requests"] / out["wall_s"], 1),
           "cpu_s": round(out["cpu_s"], 3), "requests_per_cpu_s": round(out["requests"] / out["cpu_s"], 1),
           "steps_per_s": round(out["steps"] / out["wall_s"], 1),
           "peak_rss_mb": round(max(run["peak_rss_mb"] for run in runs), 1),
           "repeats": repeats, "min_s": round(min(walls), 3), "max_s": round(max(walls), 3),
           "build": out["build"], "python": out["python"]}
    spread = f"  (median of {repeats}: {row['min_s']:.2f}-{row['max_s']:.2f} s)" if repeats > 1 else ""
    print(f"{benchmark:22s} {case:14s} {row['requests']:>9,d} req  {row['wall_s']:8.2f} s  "
          f"{row['requests_per_wall_s']:>10,.0f} req/s  (cpu {row['cpu_s']:.2f} s, "
          f"{row['requests_per_cpu_s']:,.0f} req/cpu-s)  {row['steps_per_s']:>10,.0f} steps/s  "
          f"{row['peak_rss_mb']:7.0f} MB  ({out['completed']:,d} completed, {out['build']}){spread}", flush=True)
    print(f"{'':22s} {case:14s} python: {out['python']}", flush=True)
    return row


def main(benchmark: str, cases: dict[str, Callable[[Path], dict[str, Any]]],
         references: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Parse ``[--cases C1,C2] [--repeats N] [--json FILE]``, run the cases, print ratios against references."""
    parser = argparse.ArgumentParser(description=f"servesim benchmark: {benchmark}")
    parser.add_argument("--cases", help=f"comma-separated subset of: {', '.join(cases)}")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each case, each in a fresh process; the median run is reported (default 1)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    chosen = args.cases.split(",") if args.cases else list(cases)
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(cases)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in chosen:
            rows.append(run_case(benchmark, case, cases[case](Path(tmp)), args.repeats))
            reference = (references or {}).get(case)
            if reference:
                ratio = reference / rows[-1]["wall_s"]
                print(f"{'':22s} {case:14s} reference {reference:.1f} s -> {ratio:.1f}x faster "
                      f"({rows[-1]['requests'] / reference:,.0f} req/s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    sys.exit("run one of the benchmark scripts beside this file")
