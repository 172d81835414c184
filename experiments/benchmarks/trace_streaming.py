"""Trace reading speed and memory: the Azure conversation trace, and a ten-million-row streamed replay.

Two measurements, each in a fresh process so that its peak RSS is its own:

1. ``azure-conv-2023``: build the workload for the 19,366-row Azure LLM
   conversation trace (``../shared/data``) and make every ``RequestSpec``;
   the target is under 1 s (imports excluded, best of 5).
2. ``azure-10m``: write a 10-million-row Azure-2024-format CSV (ISO
   timestamps with a zone) to a temporary folder, then stream it through
   ``build_workload`` to the last spec; the target is a peak RSS under 500 MB.

Prints one line per case with the ratio to its target (below 1 meets it) and
optionally writes the results as JSON. Usage::

    python experiments/benchmarks/trace_streaming.py [--rows 10000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
AZURE_CONV = SHARED_DATA / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
LOAD_TARGET_S = 1.0
RSS_TARGET_MB = 500.0


def write_azure_trace(path: Path, rows: int, seed: int = 0, chunk: int = 1_000_000) -> Path:
    """An Azure-2024-format CSV of ``rows`` Poisson arrivals (about 50 per second), written chunk by chunk."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-05-10T00:00:00", "ns")
    now_ns = 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for first in range(0, rows, chunk):
            n = min(chunk, rows - first)
            offsets = now_ns + np.cumsum(rng.exponential(2e7, n)).astype(np.int64)
            now_ns = int(offsets[-1])
            stamps = np.datetime_as_string(start + offsets.astype("timedelta64[ns]"), unit="us")
            frame = pd.DataFrame({"TIMESTAMP": np.char.add(np.char.replace(stamps, "T", " "), "+00:00"),
                                  "ContextTokens": rng.integers(1, 8192, n),
                                  "GeneratedTokens": rng.integers(1, 1024, n)})
            frame.to_csv(handle, header=False, index=False)
    return path


def _replay(path: str, repeats: int, queue) -> None:
    """Child process: build and exhaust the workload ``repeats`` times; report times, count, peak RSS."""
    from workloads import WorkloadConfig, build_workload

    config = WorkloadConfig.model_validate({"trace": {"path": path}})
    times, count = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        workload = build_workload(config, np.random.default_rng(0), Path("."))
        count = sum(1 for _ in workload)
        times.append(time.perf_counter() - started)
    queue.put({"wall_s": min(times), "requests": count, "stats": dataclasses.asdict(workload.stats),
               "peak_rss_mb": peak_rss_mb()})


def peak_rss_mb() -> float:
    """This process's peak resident memory.

    Linux's ``ru_maxrss`` survives fork and exec (a child started by a big parent
    inherits its peak), so the kernel's per-image high-water mark ``VmHWM`` is
    read where it exists.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def _write(path: str, rows: int, queue) -> None:
    started = time.perf_counter()
    write_azure_trace(Path(path), rows)
    queue.put(time.perf_counter() - started)


def in_child(target, *args):
    """Run ``target(*args, queue)`` in a fresh process and return what it puts on the queue."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the generated trace")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    if AZURE_CONV.exists():
        found = in_child(_replay, str(AZURE_CONV), 5)
        results.append({"case": "azure-conv-2023", **found, "target": f"load < {LOAD_TARGET_S} s",
                        "ratio": found["wall_s"] / LOAD_TARGET_S})
    else:
        print(f"skipping azure-conv-2023: {AZURE_CONV} not found", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "azure_10m.csv"
        written_s = in_child(_write, str(path), args.rows)
        found = in_child(_replay, str(path), 1)
        results.append({"case": f"azure-{args.rows // 1_000_000}m", **found, "file_mb": path.stat().st_size / 2**20,
                        "write_s": written_s, "target": f"peak RSS < {RSS_TARGET_MB:.0f} MB",
                        "ratio": found["peak_rss_mb"] / RSS_TARGET_MB})
    for result in results:
        print(f"{result['case']}: {result['requests']:,} requests in {result['wall_s']:.2f} s "
              f"({result['requests'] / result['wall_s']:,.0f}/s), peak RSS {result['peak_rss_mb']:.0f} MB; "
              f"target {result['target']}: ratio {result['ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["ratio"] < 1 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
