"""Where the useful-KV fraction of a rung comes from: KV memory over time, arrival window against drain.

    python experiments/papers/saga/kv_breakdown.py [a_baseline e_fair_share ...] [--seed 0] [--bucket-s 50]

The useful-KV fraction ``run.py`` reports is a time average over each run's
own length, from the first arrival until its last workflow ends. This
script runs the rungs named (one after another, in this process) with the
retention statistics' timeline on and prints, per rung, the fractions of all
KV blocks that were active (held by running calls), retained for idle
workflows, and retained *and* reused by their next call, averaged over the
arrival window (the first ``duration_s`` of ``agents.yaml``, 300 s), over
the drain after it, and over the whole run; the useful block-seconds (active
plus useful retained, in instance-seconds of memory: the memory-time the
workload took); and, with ``--bucket-s``, the same fractions per bucket.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from simulator.config import load_experiment
from simulator.runner import Simulation

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import RUNGS  # noqa: E402  (the ladder's policies, in one place)

SCENARIO = yaml.safe_load((HERE / "agents.yaml").read_text())
INSTANCES = sum(group["count"] for group in SCENARIO["cluster"]["instances"])


def timeline(rung: str, seed: int) -> tuple[pd.DataFrame, float]:
    """Per KV sample of one run: time, total, active, retained and useful retained blocks; and its length."""
    overrides = [f"{key}={json.dumps(value)}" for key, value in RUNGS[rung].items()] + [f"seed={seed}"]
    simulation = Simulation(load_experiment(HERE / "agents.yaml", overrides))
    simulation.retention.stats.timeline = []
    result = simulation.run()
    frame = pd.DataFrame(simulation.retention.stats.timeline,
                         columns=["t", "total", "active", "retained", "useful_retained"])
    return frame, result.summary["sim"]["simulated_s"]


def fractions(frame: pd.DataFrame) -> dict[str, float]:
    total = frame["total"].sum()
    active, retained, reused = (frame[c].sum() / total for c in ("active", "retained", "useful_retained"))
    return {"active": active, "retained": retained, "reused": reused, "useful": active + reused}


def phase_table(frames: dict[str, tuple[pd.DataFrame, float]], window_s: float, interval_s: float) -> str:
    lines = ["| rung | run length (s) | phase | seconds | active | retained | retained, reused | useful |",
             "|---|---|---|---|---|---|---|---|"]
    for rung, (frame, length) in frames.items():
        phases = {f"arrivals (< {window_s:.0f} s)": frame[frame["t"] < window_s],
                  "drain": frame[frame["t"] >= window_s], "whole run": frame}
        for name, part in phases.items():
            f = fractions(part)
            lines.append(f"| {rung} | {length:.0f} | {name} | {len(part) * interval_s:.0f} | {f['active']:.1%} | "
                         f"{f['retained']:.1%} | {f['reused']:.1%} | {f['useful']:.1%} |")
    return "\n".join(lines)


def memory_time_table(frames: dict[str, tuple[pd.DataFrame, float]], interval_s: float) -> str:
    """Useful KV memory-time of each run, in instance-seconds (one instance's whole KV for a second)."""
    lines = ["| rung | useful KV, instance-seconds | of which retained and reused |", "|---|---|---|"]
    for rung, (frame, _) in frames.items():
        # Each sample stands for interval_s seconds; blocks / (blocks per instance) = instances.
        blocks_per_instance = frame["total"].iloc[0] / INSTANCES
        useful = (frame["active"] + frame["useful_retained"]).sum() * interval_s / blocks_per_instance
        reused = frame["useful_retained"].sum() * interval_s / blocks_per_instance
        lines.append(f"| {rung} | {useful:,.0f} | {reused:,.0f} |")
    return "\n".join(lines)


def bucket_table(frames: dict[str, tuple[pd.DataFrame, float]], bucket_s: float) -> str:
    rungs = list(frames)
    lines = ["| from (s) | " + " | ".join(f"useful, {r}" for r in rungs) + " |", "|---|" + "---|" * len(rungs)]
    ends = max(frame["t"].max() for frame, _ in frames.values())
    for start in np.arange(0.0, ends, bucket_s):
        cells = []
        for frame, _ in frames.values():
            part = frame[(frame["t"] >= start) & (frame["t"] < start + bucket_s)]
            cells.append(f"{fractions(part)['useful']:.1%}" if len(part) else "-")
        lines.append(f"| {start:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rungs", nargs="*", default=["a_baseline", "e_fair_share"], choices=list(RUNGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bucket-s", type=float, default=0.0, help="also print the useful fraction per bucket")
    args = parser.parse_args(argv)
    window_s = max(source["duration_s"] for source in SCENARIO["workload"]["sources"])
    interval_s = SCENARIO["sim"]["sample_interval_s"]
    frames = {rung: timeline(rung, args.seed) for rung in args.rungs}
    print(phase_table(frames, window_s, interval_s), "\n")
    print(memory_time_table(frames, interval_s))
    if args.bucket_s:
        print("\n" + bucket_table(frames, args.bucket_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
