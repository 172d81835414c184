"""The stream of work a workload hands to the engine, and what it had to adjust.

Workloads keep their data in numpy columns and turn one chunk at a time into
specs, so a ten-million-request replay never holds ten million specs.
``Workload`` is that lazy stream plus ``WorkloadStats``: counts of rows the
workload read, dropped, filtered or changed on the way, which the run writes
into ``summary.json`` so adjustments are never silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simulator.engine.request import RequestSpec
from simulator.engine.session import SessionSpec

# Rows turned into specs at a time: large enough to amortise numpy calls, small
# enough that a chunk of columns stays in cache.
CHUNK = 4096

# Latest arrival servesim simulates: float64 times keep better than 0.2 us resolution below it.
MAX_ARRIVAL_S = 1e9

WorkItem = RequestSpec | SessionSpec


@dataclass(slots=True)
class WorkloadStats:
    """What the workload did to its sources so far (counted a chunk at a time, as specs are made).

    A flat record of numbers (it is written into ``summary.json``).

    Attributes:
        trace_rows: data rows read from trace files.
        dropped_rows: rows a reader discarded as failed requests (BurstGPT rows with no response tokens).
        filtered_rows: rows removed by ``transforms.filter``.
        reordered_rows: rows that arrived earlier than the row above them, in traces
            sorted because ``on_unsorted: sort`` asked for it.
        clipped_prompts: prompt lengths moved to a bound (a distribution's ``min_tokens``/
            ``max_tokens``, or a zero in a trace raised to one token).
        clipped_outputs: the same for output lengths (and call outputs cut to ``max_output_tokens``).
        clipped_to_context: requests or first calls whose prompt plus output was cut to fit the
            model's context.
        sessions_cut_to_context: sessions that end early because their next call would not fit
            the model's context.
    """

    trace_rows: int = 0
    dropped_rows: int = 0
    filtered_rows: int = 0
    reordered_rows: int = 0
    clipped_prompts: int = 0
    clipped_outputs: int = 0
    clipped_to_context: int = 0
    sessions_cut_to_context: int = 0


@dataclass(frozen=True)
class Limits:
    """When to stop: after ``num_requests`` LLM calls or at ``duration_s``, whichever is first."""

    num_requests: int | None = None
    duration_s: float | None = None

    def rows_within(self, handed_out: int, times: np.ndarray) -> int:
        """How many of the sorted ``times`` (single requests) may still be handed out."""
        rows = len(times)
        if self.num_requests is not None:
            rows = min(rows, self.num_requests - handed_out)
        if self.duration_s is not None:
            rows = min(rows, int(np.searchsorted(times, self.duration_s, side="left")))
        return max(rows, 0)


class Workload:
    """An iterator of ``RequestSpec`` and ``SessionSpec`` in non-decreasing ``arrival_s``, with ``stats``.

    Files are opened and configurations checked when the workload is built, so
    most errors surface before the simulation starts; a trace too large to
    read up front is checked as it streams, and a bad row there stops the run
    with the same one-line ``TraceError``.
    """

    def __init__(self, items: Iterator[WorkItem], stats: WorkloadStats) -> None:
        self._items = items
        self.stats = stats

    def __iter__(self) -> Iterator[WorkItem]:
        # Handing out the generator itself keeps a per-request method call out of loops.
        return self._items

    def __next__(self) -> WorkItem:
        return next(self._items)


def calls_of(item: WorkItem) -> int:
    """LLM calls an item stands for: one for a request, every call of a session."""
    return 1 if isinstance(item, RequestSpec) else len(item.calls)
