"""A write buffer in front of a ``LogHistogram`` for the engine's hot path.

The engine records an inter-token gap per request per step. Adding them one
at a time costs a Python call each; buffering them in plain lists and adding
them in large vectorised batches is several times cheaper. The histogram is
only read at the end, after ``flush``.
"""

from __future__ import annotations

import numpy as np

from simulator.metrics.histogram import LogHistogram

FLUSH_AT = 1 << 16


class GapBuffer:
    """Collects gaps (optionally each with a repeat count) and flushes them in batches."""

    def __init__(self, histogram: LogHistogram) -> None:
        self.histogram = histogram
        self._values: list[float] = []
        # Values added with a repeat count, flat; per group added, its count and its number of values.
        self._each_values: list[float] = []
        self._each_counts: list[int] = []
        self._each_sizes: list[int] = []

    def add(self, value: float) -> None:
        self._values.append(value)
        if len(self._values) >= FLUSH_AT:
            self._flush_values()

    def extend(self, values: list[float]) -> None:
        """Add several gaps at once (one per request of a decode run)."""
        self._values.extend(values)
        if len(self._values) >= FLUSH_AT:
            self._flush_values()

    def add_repeated(self, value: float, count: int) -> None:
        """``value`` occurs ``count`` times (one step's gap, shared by a batch)."""
        self.add_repeated_each((value,), count)

    def add_repeated_each(self, values, count: int) -> None:
        """Every value of ``values`` (a sequence of floats) occurs ``count`` times (a decode run's step gaps)."""
        self._each_values.extend(values)
        self._each_counts.append(count)
        self._each_sizes.append(len(values))
        if len(self._each_values) >= FLUSH_AT:
            self._flush_each()

    def flush(self) -> LogHistogram:
        self._flush_values()
        self._flush_each()
        return self.histogram

    def _flush_values(self) -> None:
        if self._values:
            self.histogram.add_many(np.asarray(self._values, dtype=np.float64))
            self._values = []

    def _flush_each(self) -> None:
        if self._each_values:
            values = np.array(self._each_values, dtype=np.float64)
            counts = np.repeat(np.array(self._each_counts, dtype=np.int64), self._each_sizes)
            self.histogram.add_many(values, counts)
            self._each_values, self._each_counts, self._each_sizes = [], [], []
