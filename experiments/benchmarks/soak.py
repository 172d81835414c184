"""Soak: a one-million-request run whose memory must stay flat after warm-up.

The scale benchmark's cluster and load (``scale.experiment``: Llama-3.1-8B on
64 H100s, JSQ on tokens, Azure-conversation lengths, ~80% load), with the
per-instance time series off. A SimPy process samples the resident set size
(``VmRSS`` of /proc/self/status) every ``--every`` simulated seconds, along
with how many requests have arrived and been recorded.

Memory is allowed to grow with one thing only: the per-request rows of
``requests.csv`` that the recorder keeps until the end (a few hundred bytes per
request, measured here). Growth after warm-up beyond those rows is a leak:
requests, KV blocks, events or histogram buckets that are never let go. The
script prints RSS over time, the growth after warm-up, the part the recorded
rows explain and the rest, and exits with 1 when the rest exceeds
``--max-leak-mb``.

Run: python experiments/benchmarks/soak.py [--requests 1000000] [--every SECONDS] [--warmup 0.2]
     [--max-leak-mb 50] [--json out.json]   (1M requests take a few minutes; --requests 50000 for a quick look)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from scale import RATE_PER_S, experiment


def rss_mb() -> float:
    """This process's resident set size in MB (Linux), from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark needs Linux)")


def recorder_bytes(columns: dict[str, list]) -> int:
    """Bytes held by the recorder's column lists and the objects they own (shared small ints excluded)."""
    total = 0
    for values in columns.values():
        total += sys.getsizeof(values)
        seen = set()
        for value in values:
            if id(value) not in seen and not (isinstance(value, int) and -5 <= value <= 256):
                seen.add(id(value))
                total += sys.getsizeof(value)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description="servesim soak: memory over a long run")
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests to run (default 1,000,000)")
    parser.add_argument("--every", type=float, help="simulated seconds between RSS samples "
                        "(default: about 40 samples over the run)")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run counted as warm-up (0.2)")
    parser.add_argument("--max-leak-mb", type=float, default=50.0,
                        help="growth after warm-up not explained by recorded rows that fails the soak (50)")
    parser.add_argument("--json", type=Path, help="write the samples and the verdict as JSON")
    args = parser.parse_args()
    if args.requests < 1000 or not 0 <= args.warmup < 0.9:
        parser.error("--requests must be at least 1000 and --warmup in [0, 0.9)")

    from simulator.config import resolve, validate
    from simulator.hardware import DEFAULT_CATALOG
    from simulator.runner import Simulation

    every = args.every or max(1.0, args.requests / RATE_PER_S / 40)
    with tempfile.TemporaryDirectory() as tmp:
        data = experiment(Path(tmp), args.requests)
        data["sim"] = {"sample_interval_s": None}
        path = Path(tmp) / "soak.yaml"
        path.write_text(yaml.safe_dump(data))
        simulation = Simulation(resolve(validate(data, path), path, DEFAULT_CATALOG))

    samples: list[dict[str, float]] = []
    started = time.perf_counter()

    def sample() -> None:
        samples.append({"simulated_s": simulation.env.now, "wall_s": time.perf_counter() - started,
                        "arrived": simulation.cluster.arrived, "recorded": len(simulation.recorder),
                        "rss_mb": rss_mb()})

    def sampler():
        while True:
            sample()
            yield simulation.env.timeout(every)

    print(f"soak: {args.requests:,d} requests, RSS every {every:g} simulated s", flush=True)
    print(f"{'simulated s':>12} {'wall s':>8} {'arrived':>10} {'recorded':>10} {'RSS MB':>8}", flush=True)
    simulation.env.process(sampler())
    printed = 0

    def progress():
        nonlocal printed
        while True:
            yield simulation.env.timeout(every)
            for row in samples[printed:]:
                print(f"{row['simulated_s']:12.1f} {row['wall_s']:8.1f} {row['arrived']:10,d} "
                      f"{row['recorded']:10,d} {row['rss_mb']:8.1f}", flush=True)
            printed = len(samples)

    simulation.env.process(progress())
    result = simulation.run()
    last = samples[-1]  # the last sample taken while the simulation ran
    after = rss_mb()
    print(f"{'':12} {time.perf_counter() - started:8.1f} {'':10} {len(simulation.recorder):10,d} {after:8.1f}   "
          "(after building requests.csv and summary.json)")

    rows = len(simulation.recorder)
    per_row = recorder_bytes(simulation.recorder.columns) / max(rows, 1)
    warm = next(s for s in samples if s["simulated_s"] >= args.warmup * last["simulated_s"])
    growth = last["rss_mb"] - warm["rss_mb"]
    explained = (last["recorded"] - warm["recorded"]) * per_row / 2**20
    leak = growth - explained
    verdict = "flat" if leak <= args.max_leak_mb else "GROWING"
    counts = result.summary["requests"]
    print(f"requests: {counts['completed']:,d} completed, {counts['rejected']:,d} rejected, "
          f"{counts['unfinished']:,d} unfinished of {counts['arrived']:,d}; "
          f"{result.summary['sim']['steps']:,d} steps in {last['wall_s']:.1f} s wall")
    print(f"RSS after warm-up (t={warm['simulated_s']:.0f} s): {warm['rss_mb']:.1f} MB; at the last sample "
          f"(t={last['simulated_s']:.0f} s) {last['rss_mb']:.1f} MB; growth {growth:+.1f} MB")
    print(f"recorded rows since warm-up: {last['recorded'] - warm['recorded']:,d} x {per_row:.0f} B = "
          f"{explained:.1f} MB; unexplained growth {leak:+.1f} MB "
          f"({leak * 2**20 / max(last['arrived'] - warm['arrived'], 1):+.1f} B per request): {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"requests": args.requests, "every_s": every, "samples": samples,
                                         "bytes_per_recorded_row": per_row, "growth_mb": growth,
                                         "explained_mb": explained, "unexplained_mb": leak, "rss_after_run_mb": after,
                                         "verdict": verdict}, indent=2) + "\n")
    return 0 if verdict == "flat" else 1


if __name__ == "__main__":
    sys.exit(main())
