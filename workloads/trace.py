"""Trace replay: requests read from a CSV of arrival times and token counts.

The whole trace is read into three numpy columns when the workload is built,
so a bad row is reported before the simulation starts; specs are made lazily.
Real traces are not always in time order (merged logs, clock skew), so rows
are sorted stably by arrival time and the number of out-of-order rows is
counted. A zero token count (some traces log failed requests that way) is
raised to one token and counted; negative or fractional counts are errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from simulator.engine.request import RequestSpec
from simulator.errors import TraceError, located
from workloads.config import TOKEN_CEILING, TraceConfig
from workloads.csv_columns import number_column, read_columns, token_column
from workloads.lengths import clip_tokens
from workloads.stream import CHUNK, Limits, WorkloadStats, specs_from_columns


@dataclass(frozen=True)
class TraceTable:
    """A trace in arrival order: times in seconds, token counts of at least one, clip masks."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    prompt_clipped: np.ndarray
    output_clipped: np.ndarray

    def head(self, rows: int) -> TraceTable:
        """The first ``rows`` rows."""
        return TraceTable(*(getattr(self, field.name)[:rows] for field in fields(self)))


def load_trace(config: TraceConfig, path: Path, stats: WorkloadStats) -> TraceTable:
    """Read, check, sort and rescale the trace at ``path``; counts reordered rows in ``stats``."""
    names = config.columns
    frame = read_columns(path, [names.arrival_s, names.prompt_tokens, names.output_tokens])
    arrival = number_column(path, frame, names.arrival_s)
    prompt = token_column(path, frame, names.prompt_tokens)
    output = token_column(path, frame, names.output_tokens)
    if not config.start_at_zero and arrival.min() < 0:
        row = int(np.argmin(arrival))
        raise TraceError(located(path, f"line {row + 2}", f"column {names.arrival_s!r}: negative arrival "
                                 f"time ({arrival[row]:g}); set start_at_zero: true to shift the trace"))
    stats.reordered_rows = int(np.count_nonzero(np.diff(arrival) < 0))
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order]
    if config.start_at_zero:
        arrival = arrival - arrival[0]
    prompt, prompt_clipped = clip_tokens(prompt[order], 1, TOKEN_CEILING)
    output, output_clipped = clip_tokens(output[order], 1, TOKEN_CEILING)
    return TraceTable(arrival * config.time_scale, prompt, output, prompt_clipped, output_clipped)


def within_limits(trace: TraceTable, limits: Limits) -> TraceTable:
    """The leading rows of ``trace`` that ``limits`` allow."""
    return trace.head(limits.rows_within(0, trace.arrival_s))


def replay(trace: TraceTable, max_output_tokens: int | None, stats: WorkloadStats) -> Iterator[RequestSpec]:
    """Request specs for every row of ``trace``, made ``CHUNK`` rows at a time."""
    for start in range(0, len(trace.arrival_s), CHUNK):
        chunk = slice(start, start + CHUNK)
        stats.clipped_prompts += int(np.count_nonzero(trace.prompt_clipped[chunk]))
        stats.clipped_outputs += int(np.count_nonzero(trace.output_clipped[chunk]))
        yield from specs_from_columns(trace.arrival_s[chunk], trace.prompt_tokens[chunk],
                                      trace.output_tokens[chunk], max_output_tokens)
