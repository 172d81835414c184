"""What an instance's GPU time went to: busy seconds, FLOPs, HBM bytes, energy and KV occupancy.

Steps are accounted as they commit (a decode run's steps in batches, by the
run's ``RunLedger``); the KV integral is advanced before every change of KV
use that matters, so it is exact between changes; a step cut by the end of
the simulation counts as busy until then, with its work pro rata.
"""

from __future__ import annotations

import numpy as np

from simulator.engine.kv_cache import KVCache
from simulator.metrics.run_stats import InstanceStats
from simulator.perf.power import PowerModel


class InstanceUsage:
    """Accumulates an instance's usage into its ``InstanceStats``.

    Args:
        stats: the totals to add to.
        power: turns busy time, FLOPs and bytes into joules (and idle time into idle joules).
        kv: the instance's KV cache, whose use is integrated over time.
    """

    # Steps whose joules wait for one vectorised call of the power model (see ``step``).
    ENERGY_BATCH = 1 << 12

    def __init__(self, stats: InstanceStats, power: PowerModel, kv: KVCache) -> None:
        self.stats, self.power, self.kv = stats, power, kv
        self._kv_accounted_s = 0.0
        self._unpriced: list[tuple[float, float, float]] = []  # steps whose energy is not summed yet

    def step(self, duration: float, flops: float, hbm_bytes: float) -> None:
        """One committed step of ``duration`` seconds that did this work.

        Its joules are added in batches (``flush``): evaluating the power model costs more per
        step than the rest of a commit, and nothing reads the total before the run ends.
        """
        stats = self.stats
        stats.steps += 1
        stats.busy_s += duration
        stats.flops += flops
        stats.hbm_bytes += hbm_bytes
        self._unpriced.append((duration, flops, hbm_bytes))
        if len(self._unpriced) >= self.ENERGY_BATCH:
            self.flush()

    def flush(self) -> None:
        """Add the joules of the steps committed since the last flush."""
        if self._unpriced:
            durations, flops, hbm_bytes = (np.array(column, dtype=np.float64) for column in zip(*self._unpriced))
            self._unpriced = []
            self.stats.energy_j += float(np.sum(self.power.busy_energy_j(durations, flops, hbm_bytes)))

    def partial_step(self, start: float, now: float, duration: float, flops: float, hbm_bytes: float) -> None:
        """A step cut by the end of the simulation: busy until ``now``, its work pro rata.

        Its tokens are not committed (they would appear only at its end), but the GPU was
        busy computing them: without this a run cut mid-step looked idle for that time.
        """
        busy = min(max(now - start, 0.0), duration)
        if busy <= 0.0:
            return
        share = busy / duration if duration > 0 else 0.0
        stats = self.stats
        stats.busy_s += busy
        stats.flops += flops * share
        stats.hbm_bytes += hbm_bytes * share
        stats.energy_j += self.power.busy_energy_j(busy, flops * share, hbm_bytes * share)

    def kv_until(self, now: float) -> None:
        """Integrate KV use up to ``now``; called before every change of use that matters."""
        fraction = self.kv.used_blocks / self.kv.total_blocks
        self.stats.kv_usage_integral += fraction * (now - self._kv_accounted_s)
        self._kv_accounted_s = now
        if fraction > self.stats.kv_peak_fraction:
            self.stats.kv_peak_fraction = fraction

    def kv_accounted_to(self, now: float) -> None:
        """KV use up to ``now`` was accounted elsewhere (a decode run's ledger)."""
        self._kv_accounted_s = now

    def idle(self, provisioned_s: float) -> None:
        """Charge idle energy for the provisioned seconds the instance was not busy."""
        self.stats.energy_j += self.power.idle_energy_j(max(0.0, provisioned_s - self.stats.busy_s))
