"""Per-instance time series sampled during a run: KV use, queue length, batch size.

A ``TimeSeriesSampler`` is one SimPy process that wakes every ``interval_s``
of simulated time (at exact multiples of it, so rounding never drifts) and
reads each instance's read-only view: KV blocks used and total, requests
waiting and requests running (the running batch). It only reads, so the run's
results are the same with or without it. One row per instance per sample;
requests are never copied. The rows become ``timeseries.csv``.

Memory stays bounded: when a run reaches ``max_samples`` sample times, the
interval doubles and every other sample time already taken is dropped, so
the kept rows are again at exact multiples of the (new) interval. A run of
any length therefore keeps between ``max_samples / 2`` and ``max_samples``
sample times, evenly spaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import simpy

TIMESERIES_COLUMNS: tuple[str, ...] = ("time_s", "instance_id", "kv_used_blocks", "kv_total_blocks",
                                       "kv_utilization", "num_waiting", "num_running")


class TimeSeriesSampler:
    """Samples instance views every ``interval_s`` simulated seconds, starting at time 0.

    Args:
        env: the SimPy environment of the run.
        instances: the cluster's instances (anything with ``id``, ``kv_used_blocks``,
            ``kv_total_blocks``, ``num_waiting`` and ``num_running``).
        interval_s: the sampling period in simulated seconds (> 0); it doubles as needed.
        max_samples: the most sample times kept (>= 2).
    """

    def __init__(self, env: simpy.Environment, instances: Sequence[Any], interval_s: float,
                 max_samples: int = 10_000) -> None:
        if not interval_s > 0:
            raise ValueError(f"sampling interval must be positive, got {interval_s}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be at least 2, got {max_samples}")
        self.env, self.instances, self.interval_s = env, instances, interval_s
        self.max_samples = max_samples
        self.columns: dict[str, list] = {name: [] for name in TIMESERIES_COLUMNS}
        self.process: simpy.Process | None = None

    def start(self) -> simpy.Process:
        """Start the sampling process (it runs until the simulation stops)."""
        self.process = self.env.process(self._run())
        return self.process

    def _run(self):
        tick = 0
        while True:
            self.sample()
            tick += 1
            if tick == self.max_samples:
                tick = self._thin()
            yield self.env.timeout(max(tick * self.interval_s - self.env.now, 0.0))

    def _thin(self) -> int:
        """Keep every other sample time, double the interval; returns the next tick at the new one."""
        rows_per_sample = max(1, len(self.instances))
        for name, values in self.columns.items():
            self.columns[name] = [v for i, v in enumerate(values) if (i // rows_per_sample) % 2 == 0]
        self.interval_s *= 2
        return (self.max_samples + 1) // 2

    def sample(self) -> None:
        """Append one row per instance for the current simulated time."""
        now, col = self.env.now, self.columns
        for instance in self.instances:
            used, total = instance.kv_used_blocks, instance.kv_total_blocks
            col["time_s"].append(now)
            col["instance_id"].append(instance.id)
            col["kv_used_blocks"].append(used)
            col["kv_total_blocks"].append(total)
            col["kv_utilization"].append(used / total if total else 0.0)
            col["num_waiting"].append(instance.num_waiting)
            col["num_running"].append(instance.num_running)

    def to_frame(self) -> pd.DataFrame:
        """The samples as a table with ``TIMESERIES_COLUMNS``."""
        return empty_timeseries_frame() if not self.columns["time_s"] else pd.DataFrame(self.columns)


def empty_timeseries_frame() -> pd.DataFrame:
    """A time-series table with no rows and the right columns."""
    dtypes = ("float64", "int64", "int64", "int64", "float64", "int64", "int64")
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in zip(TIMESERIES_COLUMNS, dtypes)})
