"""The stream of requests a workload hands to the engine, and what it had to adjust.

Workloads keep their data in numpy columns and turn one chunk at a time into
``RequestSpec`` objects, so a million-request run never holds a million specs.
``Workload`` is that lazy stream plus ``WorkloadStats``: counts of values the
workload changed on the way (clipped lengths, reordered trace rows), which a
report can show so adjustments are never silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simulator.engine.request import RequestSpec

# Rows turned into specs at a time: large enough to amortise numpy calls, small
# enough that a chunk of columns stays in cache.
CHUNK = 4096


@dataclass(slots=True)
class WorkloadStats:
    """Adjustments made so far to the requests handed out (or about to be, in the current chunk).

    Attributes:
        clipped_prompts: prompt lengths moved to a bound (``min_tokens``/``max_tokens``,
            or a zero in a trace raised to one token).
        clipped_outputs: the same for output lengths.
        reordered_rows: trace rows that arrived earlier than the row above them;
            the trace was sorted by arrival time (stably) before replay.
    """

    clipped_prompts: int = 0
    clipped_outputs: int = 0
    reordered_rows: int = 0


@dataclass(frozen=True)
class Limits:
    """When to stop: after ``num_requests`` requests or at ``duration_s``, whichever is first."""

    num_requests: int | None = None
    duration_s: float | None = None

    def rows_within(self, handed_out: int, times: np.ndarray) -> int:
        """How many of the sorted ``times`` may still be handed out."""
        rows = len(times)
        if self.num_requests is not None:
            rows = min(rows, self.num_requests - handed_out)
        if self.duration_s is not None:
            rows = min(rows, int(np.searchsorted(times, self.duration_s, side="left")))
        return rows


class Workload:
    """An iterator of ``RequestSpec`` in non-decreasing arrival order, with its ``stats``.

    Files are read and configurations checked when the workload is built, so
    errors surface before the simulation starts; specs are made on demand.
    """

    def __init__(self, specs: Iterator[RequestSpec], stats: WorkloadStats) -> None:
        self._specs = specs
        self.stats = stats

    def __iter__(self) -> Iterator[RequestSpec]:
        # Handing out the generator itself keeps a per-request method call out of loops.
        return self._specs

    def __next__(self) -> RequestSpec:
        return next(self._specs)


def specs_from_columns(
    arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
    max_output_tokens: int | None,
) -> Iterator[RequestSpec]:
    """One ``RequestSpec`` per row of the given equal-length columns, as plain Python numbers."""
    rows = zip(arrival_s.tolist(), prompt_tokens.tolist(), output_tokens.tolist(), strict=True)
    for arrival, prompt, output in rows:
        yield RequestSpec(arrival, prompt, output, max_output_tokens)
