"""Samplers of durations (think times, tool latencies) and counts (turns, calls per task).

Each turns one configured ``dist`` into a function of a random generator and
a size. Durations are float seconds >= 0; counts are int64 >= 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from workloads.config_dists import (
    ExponentialDuration, FixedCount, FixedDuration, GeometricCount, LognormalDuration, QuantileCount,
    QuantileDuration, UniformCount, UniformDuration,
)
from workloads.lengths import quantile_draw

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def duration_sampler(dist) -> Sampler:
    """Seconds from a ``DurationDist``."""
    match dist:
        case FixedDuration(seconds=seconds):
            return lambda rng, n: np.full(n, seconds, dtype=np.float64)
        case ExponentialDuration(mean_s=mean):
            return lambda rng, n: rng.exponential(mean, n)
        case UniformDuration(min_s=low, max_s=high):
            return lambda rng, n: rng.uniform(low, high, n)
        case LognormalDuration(median_s=median, sigma=sigma, max_s=cap):
            mu, high = math.log(median), math.inf if cap is None else cap
            return lambda rng, n: np.minimum(rng.lognormal(mu, sigma, n), high)
        case QuantileDuration(probabilities=probabilities, seconds=seconds):
            return quantile_draw(probabilities, seconds)
    raise TypeError(f"unknown duration distribution {dist!r}")


def count_sampler(dist) -> Sampler:
    """Whole numbers >= 1 from a ``CountDist``."""
    match dist:
        case FixedCount(value=value):
            return lambda rng, n: np.full(n, value, dtype=np.int64)
        case UniformCount(min=low, max=high):
            return lambda rng, n: rng.integers(low, high, size=n, endpoint=True)
        case GeometricCount(mean=mean):
            return lambda rng, n: rng.geometric(1.0 / mean, n).astype(np.int64)
        case QuantileCount(probabilities=probabilities, values=values):
            draw = quantile_draw(probabilities, values)
            return lambda rng, n: np.maximum(np.rint(draw(rng, n)), 1).astype(np.int64)
    raise TypeError(f"unknown count distribution {dist!r}")
