"""Trace transforms on streams of ``RequestBatch``: filter, window, first-N, random-N, time scaling.

Each transform is a generator over batches in time order, so a chain of them
streams a file of any length in bounded memory (random-N keeps at most N
rows). A window stops reading at its end, so replaying one hour of a
week-long trace does not read the rest of the week.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

import numpy as np

from workloads.batch import RequestBatch
from workloads.config_trace import TransformsConfig
from workloads.stream import WorkloadStats


def transformed(batches: Iterator[RequestBatch], config: TransformsConfig, rng: np.random.Generator,
                stats: WorkloadStats) -> Iterator[RequestBatch]:
    """``batches`` with the configured transforms applied in their documented order."""
    if config.filter:
        batches = filtered(batches, config.filter, stats)
    if config.window_s is not None:
        batches = windowed(batches, *config.window_s)
    if config.first_n is not None:
        batches = first_n(batches, config.first_n)
    if config.sample_n is not None:
        batches = sampled(batches, config.sample_n, rng)
    if config.time_factor != 1.0:
        batches = scaled(batches, config.time_factor)
    return batches


def matches(column: np.ndarray, values: Sequence[object]) -> np.ndarray:
    """Rows of ``column`` equal to one of ``values`` (numbers compared as numbers, anything else as text)."""
    if column.dtype.kind in "iuf":
        numbers = [float(v) for v in values if _is_number(v)]
        return np.isin(column.astype(np.float64), numbers)
    wanted = {str(v) for v in values}
    return np.fromiter((v is not None and str(v) in wanted for v in column), dtype=bool, count=len(column))


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def filtered(batches: Iterator[RequestBatch], rules: Mapping[str, Sequence[object]],
             stats: WorkloadStats) -> Iterator[RequestBatch]:
    """Rows whose every named column holds one of its listed values."""
    for batch in batches:
        keep = np.ones(len(batch), dtype=bool)
        for name, values in rules.items():
            keep &= matches(batch.columns[name], values)
        stats.filtered_rows += int(len(batch) - keep.sum())
        yield batch if keep.all() else batch.take(keep)


def windowed(batches: Iterator[RequestBatch], start_s: float, end_s: float) -> Iterator[RequestBatch]:
    """Rows arriving in ``[start_s, end_s)``, shifted so ``start_s`` becomes 0; stops reading at the end."""
    for batch in batches:
        times = batch.arrival_s
        low, high = np.searchsorted(times, [start_s, end_s], side="left")
        if high > low:
            inside = batch.take(slice(low, high))
            inside.arrival_s = inside.arrival_s - start_s
            yield inside
        if high < len(times):
            return


def first_n(batches: Iterator[RequestBatch], n: int) -> Iterator[RequestBatch]:
    """The first ``n`` rows."""
    left = n
    for batch in batches:
        if len(batch) >= left:
            yield batch.take(slice(0, left))
            return
        left -= len(batch)
        yield batch


def sampled(batches: Iterator[RequestBatch], n: int, rng: np.random.Generator,
            chunk_rows: int = 1 << 16) -> Iterator[RequestBatch]:
    """``n`` rows drawn uniformly without replacement, in their original order.

    Bottom-k sampling: every row gets a uniform key and the ``n`` smallest keys
    win, which is a uniform sample and needs only ``n`` rows of memory.
    """
    kept: RequestBatch | None = None
    keys = np.empty(0)
    for batch in batches:
        candidates = batch if kept is None else RequestBatch.concat([kept, batch])
        keys = np.concatenate([keys, rng.random(len(batch))])
        if len(keys) > n:
            chosen = np.sort(np.argpartition(keys, n - 1)[:n])
            candidates, keys = candidates.take(chosen), keys[chosen]
        kept = candidates
    if kept is not None:
        for start in range(0, len(kept), chunk_rows):
            yield kept.take(slice(start, start + chunk_rows))


def scaled(batches: Iterator[RequestBatch], factor: float) -> Iterator[RequestBatch]:
    """Arrival times multiplied by ``factor`` (below 1 compresses time: a higher rate).

    A product too large for float64 becomes infinity without numpy's warning on stderr:
    the trace's time check names the line it reaches instead.
    """
    for batch in batches:
        with np.errstate(over="ignore"):
            times = batch.arrival_s * factor
        yield replace(batch, arrival_s=times)
