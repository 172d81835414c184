"""Soak: a one-million-request run whose memory must stay flat after warm-up.

The scale benchmark's cluster and load (``scale.experiment``: Llama-3.1-8B on
64 H100s, JSQ on tokens, Azure-conversation lengths, ~80% load), with the
per-instance time series off. A SimPy process samples the resident set size
(``VmRSS`` of /proc/self/status) every ``--every`` simulated seconds, along
with how many requests have arrived and been recorded.

Memory is allowed to grow with one thing only: the per-request rows of
``requests.csv`` that the recorder keeps until the end (a few hundred bytes per
request, measured here). Anything else that grows after warm-up is a leak:
requests, KV blocks, events or histogram buckets that are never let go. RSS
alone cannot tell: the allocator keeps freed memory fragmented among the
recorded rows, so RSS grows somewhat faster than the rows (about 90 B a request
at 1M). The verdict therefore counts live Python objects (``sys.getallocatedblocks``)
beyond the recorder's own and exits with 1 when more than ``--max-leak-objects``
per request remain. ``--where`` (slow; use fewer requests) shows which code holds them.

Run: python experiments/benchmarks/soak.py [--requests 1000000] [--every SECONDS] [--warmup 0.2]
     [--max-leak-objects 0.05] [--where] [--json out.json]
     (1M requests take about 7 minutes; --requests 50000 for a quick look)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
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


def recorder_footprint(columns: dict[str, list], sample_rows: int = 50_000) -> tuple[float, float]:
    """(bytes, objects) per row that the recorder alone holds, from its last ``sample_rows`` rows.

    An object counts when the recorder's lists hold every reference to it (one float can sit in
    two columns: a last token time that is also the finish time); cached small ints and shared
    strings do not. List slots count at the lists' size per row.
    """
    rows = len(next(iter(columns.values())))
    first = max(rows - sample_rows, 0)
    found: dict[int, list] = {}
    for values in columns.values():
        for index in range(first, rows):
            value = values[index]
            entry = found.get(id(value))
            if entry is None:
                found[id(value)] = [value, 1]
            else:
                entry[1] += 1
    owned_bytes, owned = 0, 0
    for entry in found.values():
        # References besides the list slots: the entry, and getrefcount's argument.
        if sys.getrefcount(entry[0]) - 2 <= entry[1]:
            owned += 1
            owned_bytes += sys.getsizeof(entry[0])
    sampled = max(rows - first, 1)
    slots = sum(sys.getsizeof(values) for values in columns.values()) / max(rows, 1)
    return owned_bytes / sampled + slots, owned / sampled


def main() -> int:
    parser = argparse.ArgumentParser(description="servesim soak: memory over a long run")
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests to run (default 1,000,000)")
    parser.add_argument("--every", type=float, help="simulated seconds between RSS samples "
                        "(default: about 40 samples over the run)")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run counted as warm-up (0.2)")
    parser.add_argument("--max-leak-objects", type=float, default=0.05,
                        help="live objects per request after warm-up, beyond the recorded rows, that fail the soak "
                             "(0.05)")
    parser.add_argument("--json", type=Path, help="write the samples and the verdict as JSON")
    parser.add_argument("--where", action="store_true",
                        help="trace allocations from warm-up on (tracemalloc, several times slower) and print "
                             "the code that holds the most new memory at the end, to find a leak")
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
                        "rss_mb": rss_mb(), "live_blocks": sys.getallocatedblocks()})

    def sampler():
        while True:
            sample()
            if args.where and not tracemalloc.is_tracing() and \
                    simulation.env.now >= args.warmup * args.requests / RATE_PER_S:
                tracemalloc.start(4)
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

    per_row, objects_per_row = recorder_footprint(simulation.recorder.columns)
    warm = next(s for s in samples if s["simulated_s"] >= args.warmup * last["simulated_s"])
    requests = max(last["arrived"] - warm["arrived"], 1)
    new_rows = last["recorded"] - warm["recorded"]
    growth = last["rss_mb"] - warm["rss_mb"]
    explained = new_rows * per_row / 2**20
    # The verdict counts live Python objects (pymalloc blocks), which allocator fragmentation does not
    # inflate: beyond the recorder's own, a leak adds at least one object per request it holds on to.
    leaked_objects = (last["live_blocks"] - warm["live_blocks"]) - new_rows * objects_per_row
    leak_per_request = leaked_objects / requests
    verdict = "flat" if leak_per_request <= args.max_leak_objects else "GROWING"
    counts = result.summary["requests"]
    print(f"requests: {counts['completed']:,d} completed, {counts['rejected']:,d} rejected, "
          f"{counts['unfinished']:,d} unfinished of {counts['arrived']:,d}; "
          f"{result.summary['sim']['steps']:,d} steps in {last['wall_s']:.1f} s wall")
    print(f"RSS after warm-up (t={warm['simulated_s']:.0f} s): {warm['rss_mb']:.1f} MB; at the last sample "
          f"(t={last['simulated_s']:.0f} s) {last['rss_mb']:.1f} MB; growth {growth:+.1f} MB, of which the "
          f"{new_rows:,d} rows recorded since hold {explained:.1f} MB ({per_row:.0f} B a row); the rest, "
          f"{growth - explained:+.1f} MB ({(growth - explained) * 2**20 / requests:+.0f} B a request), is allocator "
          "overhead unless objects leak:")
    print(f"live objects beyond the recorded rows ({objects_per_row:.1f} a row): {leaked_objects:+,.0f} "
          f"({leak_per_request:+.3f} per request; at most {args.max_leak_objects:g} is flat): {verdict}")
    if args.where and tracemalloc.is_tracing():
        ours = tuple(f"{os.sep}{package}{os.sep}" for package in ("simulator", "policies", "workloads"))
        snapshot = tracemalloc.take_snapshot()
        print("memory allocated since warm-up and still held, by the servesim line that allocated it:")
        for stat in snapshot.statistics("traceback")[:8]:
            frames = [frame for frame in stat.traceback if any(part in frame.filename for part in ours)]
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else stat.traceback[-1].filename
            print(f"  {stat.size / 2**20:7.1f} MB in {stat.count:9,d} blocks  {where}")
    if args.json:
        args.json.write_text(json.dumps({"requests": args.requests, "every_s": every, "samples": samples,
                                         "bytes_per_recorded_row": per_row, "growth_mb": growth,
                                         "explained_mb": explained, "leaked_objects_per_request": leak_per_request,
                                         "rss_after_run_mb": after,
                                         "verdict": verdict}, indent=2) + "\n")
    return 0 if verdict == "flat" else 1


if __name__ == "__main__":
    sys.exit(main())
