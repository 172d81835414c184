"""Arrival processes: renewal processes with i.i.d. gamma inter-arrival gaps.

A gamma gap with shape ``k = 1 / cv**2`` and scale ``1 / (rate * k)`` has
mean ``1 / rate`` and coefficient of variation ``cv``. Shape 1 is the
exponential, i.e. a Poisson process; ``cv > 1`` gives the bursty arrivals
seen in production traces, ``cv < 1`` more regular ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workloads.config import ArrivalConfig


@dataclass(frozen=True)
class RenewalArrivals:
    """Arrival times whose gaps are i.i.d. gamma(shape, scale); the process starts at time 0."""

    shape: float
    scale: float

    @classmethod
    def from_config(cls, config: ArrivalConfig) -> RenewalArrivals:
        shape = 1.0 if config.process == "poisson" else 1.0 / config.cv**2
        return cls(shape=shape, scale=1.0 / (config.rate_per_s * shape))

    def gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` inter-arrival gaps in seconds."""
        if self.shape == 1.0:
            return rng.exponential(self.scale, n)
        return rng.gamma(self.shape, self.scale, n)

    def times_after(self, rng: np.random.Generator, start_s: float, n: int) -> np.ndarray:
        """The next ``n`` arrival times after an arrival (or the start) at ``start_s``."""
        return start_s + np.cumsum(self.gaps(rng, n))
