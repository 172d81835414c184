"""Arrival processes: renewal processes (Poisson, gamma, Weibull) and on/off bursts.

Each process is a small stateful clock: ``times(rng, n)`` returns the next
``n`` arrival times, continuing from the previous call, so a workload draws
them a chunk at a time. All are parameterised by their long-run mean rate.

- Gamma gaps with shape ``k = 1 / cv**2`` and scale ``1 / (rate * k)`` have
  mean ``1 / rate`` and coefficient of variation ``cv``; ``k = 1`` is Poisson.
- Weibull gaps with shape ``k`` have ``cv**2 = G(1 + 2/k) / G(1 + 1/k)**2 - 1``;
  given a cv, ``k`` is found by root-finding; the scale sets the mean.
- On/off is an interrupted Poisson process: exponential on and off periods,
  Poisson arrivals only while on. Its gaps have squared CV
  ``1 + 2 * rate_on * a / (a + b)**2`` with ``a = 1/on_s``, ``b = 1/off_s``.
"""

from __future__ import annotations

import math

import numpy as np

from workloads.config_generators import GammaArrivals, OnOffArrivals, PoissonArrivals, WeibullArrivals


class RenewalArrivals:
    """Arrival times whose gaps are i.i.d. draws of ``gaps``; the process starts at time 0."""

    def __init__(self, gaps) -> None:
        self._gaps = gaps
        self.now = 0.0

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The next ``n`` arrival times."""
        times = self.now + np.cumsum(self._gaps(rng, n))
        self.now = float(times[-1])
        return times


def weibull_shape(cv: float) -> float:
    """The Weibull shape ``k`` whose gaps have coefficient of variation ``cv``."""
    from scipy.optimize import brentq  # here, not at the top: scipy's import is a fifth of start-up
    from scipy.special import gammaln

    def excess(log_k: float) -> float:
        k = math.exp(log_k)
        return 0.5 * math.log(math.expm1(gammaln(1 + 2 / k) - 2 * gammaln(1 + 1 / k))) - math.log(cv)

    return math.exp(brentq(excess, math.log(0.02), math.log(200.0), xtol=1e-12))


def _weibull_gaps(config: WeibullArrivals):
    from scipy.special import gammaln  # (see weibull_shape)

    k = config.shape if config.shape is not None else weibull_shape(config.cv)
    scale = 1.0 / (config.rate_per_s * math.exp(gammaln(1 + 1 / k)))
    return lambda rng, n: scale * rng.weibull(k, n)


class OnOffProcess:
    """Poisson arrivals at ``rate_on`` during exponential on periods; none during off periods.

    Arrivals are first drawn in "on time" (the clock that runs only while on)
    and then mapped to real time by adding the off time before their on period.
    The process starts in its stationary state: off with probability off/(on+off).
    """

    def __init__(self, config: OnOffArrivals) -> None:
        self.on_s, self.off_s = config.on_s, config.off_s
        self.rate_on = config.rate_per_s * (config.on_s + config.off_s) / config.on_s
        self.on_clock = 0.0
        self.ends = np.empty(0)  # on time at which each known on period ends
        self.offsets = np.empty(0)  # off time elapsed before each known on period

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if not len(self.ends):
            start_off = rng.random() < self.off_s / (self.on_s + self.off_s)
            self._extend(rng, rng.exponential(self.off_s) if start_off else 0.0)
        on_times = self.on_clock + np.cumsum(rng.exponential(1.0 / self.rate_on, n))
        self.on_clock = float(on_times[-1])
        while self.ends[-1] <= self.on_clock:
            self._extend(rng, self.offsets[-1] + rng.exponential(self.off_s))
        period = np.searchsorted(self.ends, on_times, side="right")
        times = on_times + self.offsets[period]
        # Forget periods that are over, so memory stays bounded.
        keep = int(period[-1])
        self.ends, self.offsets = self.ends[keep:], self.offsets[keep:]
        return times

    def _extend(self, rng: np.random.Generator, first_offset: float, count: int = 64) -> None:
        # count new on periods; the first starts after first_offset of off time in total.
        ons = rng.exponential(self.on_s, count)
        offs = np.concatenate([[first_offset], first_offset + np.cumsum(rng.exponential(self.off_s, count - 1))])
        start = self.ends[-1] if len(self.ends) else 0.0
        self.ends = np.concatenate([self.ends, start + np.cumsum(ons)])
        self.offsets = np.concatenate([self.offsets, offs])


def arrival_process(config) -> RenewalArrivals | OnOffProcess:
    """A fresh clock for an ``ArrivalConfig``."""
    match config:
        case PoissonArrivals(rate_per_s=rate):
            return RenewalArrivals(lambda rng, n: rng.exponential(1.0 / rate, n))
        case GammaArrivals(rate_per_s=rate, cv=cv):
            shape = 1.0 / cv**2
            if shape == 1.0:  # the same draws as Poisson, so cv: 1 reproduces it exactly
                return RenewalArrivals(lambda rng, n: rng.exponential(1.0 / rate, n))
            return RenewalArrivals(lambda rng, n: rng.gamma(shape, 1.0 / (rate * shape), n))
        case WeibullArrivals():
            return RenewalArrivals(_weibull_gaps(config))
        case OnOffArrivals():
            return OnOffProcess(config)
    raise TypeError(f"unknown arrival process {config!r}")
