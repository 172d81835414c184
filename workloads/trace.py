"""Trace replay: from a trace file to a stream of ``RequestBatch`` in arrival order.

The pipeline is: choose the reader (by name or ``format: auto``), read the
file in chunks, count rows, enforce time order, shift to start at zero, then
apply the transforms. Time order is checked, never assumed: rows out of order
are an error naming the first such line unless the experiment asks for
``on_unsorted: sort``, which sorts in memory (stably) and counts the rows that
moved. Zero token counts are raised to one token later, where every source's
lengths are checked and counted alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from simulator.errors import TraceError, located
from workloads.batch import RequestBatch
from workloads.config_trace import TraceConfig, TransformsConfig
from workloads.readers import choose_reader
from workloads.stream import MAX_ARRIVAL_S, WorkloadStats
from workloads.transforms import transformed

SORTED_CHUNK = 1 << 16


def trace_batches(config: TraceConfig, path: Path, rng: np.random.Generator, stats: WorkloadStats,
                  extra_columns: Iterable[str] = ()) -> Iterator[RequestBatch]:
    """The requests of the trace at ``path``, transformed, in non-decreasing arrival order.

    The first batch is read now, so a wrong format, a missing column or an
    empty result fails when the workload is built; later rows are checked as
    they stream.
    """
    reader = choose_reader(config, path)
    columns = sorted(set(extra_columns) | set(config.transforms.filter or {}))
    batches = _counted(reader.read(path, columns), stats)
    batches = _sorted(batches, path, stats) if config.on_unsorted == "sort" else _checked_order(batches, path)
    batches = _shifted(batches, path, config.start_at_zero)
    batches = (b for b in transformed(batches, config.transforms, rng, stats) if len(b))
    batches = _in_time(batches, path, config.transforms)
    first = next(batches, None)
    if first is None:
        raise TraceError(located(path, "", f"no requests left to replay ({stats.trace_rows} rows read, "
                                 f"{stats.dropped_rows} dropped as failed, {stats.filtered_rows} filtered out; "
                                 "check the transforms)"))
    return itertools.chain([first], batches)


def _counted(batches: Iterator[RequestBatch], stats: WorkloadStats) -> Iterator[RequestBatch]:
    for batch in batches:
        stats.trace_rows += len(batch) + batch.dropped
        stats.dropped_rows += batch.dropped
        yield batch


def _checked_order(batches: Iterator[RequestBatch], path: Path) -> Iterator[RequestBatch]:
    previous = -np.inf
    for batch in batches:
        if len(batch):
            times = np.concatenate([[previous], batch.arrival_s])
            with np.errstate(over="ignore"):  # gaps beyond float64 (rows near +-1.8e308) are infinite, still sorted
                late = np.flatnonzero(np.diff(times) < 0)
            if late.size:
                row = int(late[0])
                raise TraceError(located(path, f"line {batch.line[row]}", (
                    f"not sorted by arrival time: {times[row] - times[row + 1]:g} s earlier than the row "
                    "above; set on_unsorted: sort to sort the trace")))
            previous = batch.arrival_s[-1]
        yield batch


def _sorted(batches: Iterator[RequestBatch], path: Path, stats: WorkloadStats) -> Iterator[RequestBatch]:
    # Sorting needs the whole trace in memory; only done when the experiment asks for it.
    parts = list(batches)
    if not parts:
        return
    everything = RequestBatch.concat(parts)
    with np.errstate(over="ignore"):  # as in _checked_order: an infinite gap keeps its sign
        stats.reordered_rows += int(np.count_nonzero(np.diff(everything.arrival_s) < 0))
    ordered = everything.take(np.argsort(everything.arrival_s, kind="stable"))
    for start in range(0, len(ordered), SORTED_CHUNK):
        yield ordered.take(slice(start, start + SORTED_CHUNK))


def _in_time(batches: Iterator[RequestBatch], path: Path, transforms: TransformsConfig) -> Iterator[RequestBatch]:
    """``batches`` up to the first row arriving after ``MAX_ARRIVAL_S`` (or at infinity), then a ``TraceError``.

    The rows before it are handed out first, so a replay whose limits stop earlier never
    reaches the error (the same rows as the workload-wide check, but naming the line).
    """
    for batch in batches:
        late = np.flatnonzero(~(batch.arrival_s <= MAX_ARRIVAL_S))
        if late.size:
            row = int(late[0])
            if row:
                yield batch.take(slice(0, row))
            where = f"line {batch.line[row]}" if batch.line is not None else ""
            raise TraceError(located(path, where, _late_arrival(float(batch.arrival_s[row]), transforms)))
        yield batch


def _late_arrival(arrival_s: float, transforms: TransformsConfig) -> str:
    """What is wrong with an arrival beyond ``MAX_ARRIVAL_S``, and which setting to look at."""
    if transforms.rate_scale is not None:
        cause, hint = f" after transforms.rate_scale: {transforms.rate_scale:g}", "raise rate_scale"
    elif transforms.time_scale != 1.0:
        cause, hint = f" after transforms.time_scale: {transforms.time_scale:g}", "lower time_scale"
    else:
        cause, hint = "", "check the trace's time unit"
    return (f"arrives at {arrival_s:g} s{cause}; expected finite arrival times up to {MAX_ARRIVAL_S:g} s "
            f"(about 31 years, the longest servesim simulates); {hint}")


def _shifted(batches: Iterator[RequestBatch], path: Path, start_at_zero: bool) -> Iterator[RequestBatch]:
    origin = None
    for batch in batches:
        if not len(batch):
            continue
        if origin is None:
            origin = float(batch.arrival_s[0]) if start_at_zero else 0.0
            if batch.arrival_s[0] < 0 and not start_at_zero:
                raise TraceError(located(path, f"line {batch.line[0]}", (
                    f"negative arrival time ({batch.arrival_s[0]:g} s); set start_at_zero: true to shift "
                    "the trace")))
        if origin:
            with np.errstate(over="ignore"):  # a difference beyond float64 is infinite; _in_time names its line
                batch.arrival_s = batch.arrival_s - origin
        yield batch
