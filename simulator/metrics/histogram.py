"""A log-bucketed histogram of non-negative values, for inter-token gaps.

servesim records no per-token rows. Every inter-token gap instead lands in a
``LogHistogram``: bucket ``i`` holds the values in ``[g**i, g**(i+1))`` with
``g = 1.01``, and stands for them by its geometric midpoint ``g**(i + 0.5)``, so
any value is represented within ``sqrt(g) - 1`` (about 0.5%) of itself. Zeros
have their own counter because a logarithm cannot hold them. Counts are kept
in a numpy array that grows on demand around the buckets seen so far, so adding
is O(1) amortised and a whole decode run of identical gaps is one addition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_GROWTH = 1.01
MAX_GROWTH = 1.02


class LogHistogram:
    """Counts of non-negative values in geometric buckets (relative error under 1%).

    The exact sum, minimum and maximum are tracked beside the buckets: ``mean()``
    is exact, and quantiles are clamped to ``[min, max]`` so the extremes and a
    histogram of one repeated value are exact too.

    Quantiles follow numpy's default ("linear") method applied to the sample the
    histogram stands for: the rank ``h = (n - 1) * q`` is interpolated between the
    values of order ``floor(h)`` and ``floor(h) + 1``.
    """

    __slots__ = ("growth", "_log_growth", "_offset", "_counts", "_zeros", "_sum", "_min", "_max")

    def __init__(self, growth: float = DEFAULT_GROWTH) -> None:
        if not 1.0 < growth <= MAX_GROWTH:
            # Beyond MAX_GROWTH the midpoint error sqrt(growth) - 1 would pass the promised 1%.
            raise ValueError(f"growth must be in (1, {MAX_GROWTH}], got {growth}")
        self.growth = float(growth)
        self._log_growth = math.log(self.growth)
        self._offset = 0  # bucket index of _counts[0]
        self._counts = np.zeros(0, dtype=np.int64)
        self._zeros = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    # ---- adding -------------------------------------------------------------------------

    def add(self, value: float, weight: int = 1) -> None:
        """Count ``value`` ``weight`` times."""
        self.add_repeated(value, weight)

    def add_repeated(self, value: float, count: int) -> None:
        """Count ``value`` ``count`` times in O(1): a decode run of identical gaps."""
        value = float(value)
        count = _as_count(count)
        _check_value(value)
        if count == 0:
            return
        if value == 0.0:
            self._zeros += count
        else:
            index = self._bucket_of(value)
            self._ensure(index, index)
            self._counts[index - self._offset] += count
        self._sum += value * count
        self._min = min(self._min, value)
        self._max = max(self._max, value)

    def add_many(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Count each ``values[k]`` ``weights[k]`` times (once when ``weights`` is None)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        counts = _as_counts(weights, values.size)
        if values.size == 0:
            return
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError("histogram values must be finite and non-negative")
        keep = counts > 0
        values, counts = values[keep], counts[keep]
        if values.size == 0:
            return
        zero = values == 0.0
        self._zeros += int(counts[zero].sum())
        self._add_positive(values[~zero], counts[~zero])
        # Not np.dot: on long vectors BLAS starts threads that then spin on the other cores.
        self._sum += float(np.sum(values * counts))
        self._min = min(self._min, float(values.min()))
        self._max = max(self._max, float(values.max()))

    def _add_positive(self, values: np.ndarray, counts: np.ndarray) -> None:
        if values.size == 0:
            return
        index = self._buckets_of(values)
        low, high = int(index.min()), int(index.max())
        self._ensure(low, high)
        # bincount over the touched span is one vectorised pass; np.add.at is far slower.
        span = np.bincount(index - low, weights=counts, minlength=high - low + 1)
        start = low - self._offset
        self._counts[start:start + span.size] += np.rint(span).astype(np.int64)

    def merge(self, other: LogHistogram) -> LogHistogram:
        """Add every count of ``other`` into this histogram; returns ``self``."""
        if other.growth != self.growth:
            raise ValueError(
                f"cannot merge histograms with growth {self.growth} and {other.growth}")
        if other._counts.size:
            high = other._offset + other._counts.size - 1
            self._ensure(other._offset, high)
            start = other._offset - self._offset
            self._counts[start:start + other._counts.size] += other._counts
        self._zeros += other._zeros
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        return self

    # ---- reading ------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of values counted (with their weights)."""
        return self._zeros + int(self._counts.sum())

    @property
    def total(self) -> float:
        """Exact sum of the values counted."""
        return self._sum

    def mean(self) -> float:
        """Exact mean of the values; nan when empty."""
        n = self.count
        return self._sum / n if n else math.nan

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (``q`` in [0, 1]) by numpy's linear method; nan when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be in [0, 1], got {q}")
        n = self.count
        if n == 0:
            return math.nan
        rank = (n - 1) * q
        below = math.floor(rank)
        above = min(below + 1, n - 1)
        cumulative = np.cumsum(self._counts)
        low, high = self._value_at(below, cumulative), self._value_at(above, cumulative)
        return low + (rank - below) * (high - low)

    def _value_at(self, rank: int, cumulative: np.ndarray) -> float:
        """Representative value of the ``rank``-th smallest counted value (0-based)."""
        if rank < self._zeros:
            return 0.0
        position = int(np.searchsorted(cumulative, rank - self._zeros, side="right"))
        value = math.exp((self._offset + position + 0.5) * self._log_growth)
        return min(max(value, self._min), self._max)

    # ---- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict holding only the non-empty buckets."""
        nonzero = np.flatnonzero(self._counts)
        empty = self.count == 0
        return {
            "growth": self.growth,
            "zero_count": self._zeros,
            "buckets": (nonzero + self._offset).tolist(),
            "counts": self._counts[nonzero].tolist(),
            "sum": self._sum,
            "min": None if empty else self._min,
            "max": None if empty else self._max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogHistogram:
        """Rebuild a histogram written by ``to_dict``."""
        hist = cls(growth=data["growth"])
        buckets = np.asarray(data["buckets"], dtype=np.int64)
        if buckets.size:
            hist._ensure(int(buckets.min()), int(buckets.max()))
            hist._counts[buckets - hist._offset] = np.asarray(data["counts"], dtype=np.int64)
        hist._zeros = int(data["zero_count"])
        hist._sum = float(data["sum"])
        if data["min"] is not None:
            hist._min, hist._max = float(data["min"]), float(data["max"])
        return hist

    def __repr__(self) -> str:
        return f"LogHistogram(count={self.count}, mean={self.mean():.6g}, growth={self.growth})"

    # ---- buckets ------------------------------------------------------------------------

    def _bucket_of(self, value: float) -> int:
        return math.floor(math.log(value) / self._log_growth)

    def _buckets_of(self, values: np.ndarray) -> np.ndarray:
        return np.floor(np.log(values) / self._log_growth).astype(np.int64)

    def _ensure(self, low: int, high: int) -> None:
        """Grow the count array so bucket indices ``low..high`` fit."""
        size = self._counts.size
        if size and self._offset <= low and high < self._offset + size:
            return
        if size == 0:
            new_low, new_high = low, high
        else:
            new_low = min(low, self._offset)
            new_high = max(high, self._offset + size - 1)
        # Grow by at least the current size on each side touched, so repeated growth is
        # amortised O(1) per add.
        slack = max(size, 16)
        if new_low < self._offset or size == 0:
            new_low -= slack
        if new_high >= self._offset + size or size == 0:
            new_high += slack
        grown = np.zeros(new_high - new_low + 1, dtype=np.int64)
        if size:
            start = self._offset - new_low
            grown[start:start + size] = self._counts
        self._counts, self._offset = grown, new_low


def _check_value(value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"histogram values must be finite and non-negative, got {value}")


def _as_count(count: int) -> int:
    if count != int(count) or count < 0:
        raise ValueError(f"histogram weights must be non-negative integers, got {count}")
    return int(count)


def _as_counts(weights: np.ndarray | None, size: int) -> np.ndarray:
    if weights is None:
        return np.ones(size, dtype=np.int64)
    weights = np.asarray(weights).ravel()
    if weights.size != size:
        raise ValueError(f"got {size} values but {weights.size} weights")
    if np.any(weights < 0) or np.any(weights != np.round(weights)):
        raise ValueError("histogram weights must be non-negative integers")
    return weights.astype(np.int64)
