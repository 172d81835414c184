"""Capacity search: per configuration, the highest arrival rate that meets the SLO target.

DistServe's goodput of a configuration is the highest request rate at which
a target fraction (say 90%) of requests meets every SLO. For each point of a
sweep (every key but the rate), ``CapacitySearch`` first brackets that rate -
doubling from the start rate while the target holds, halving while it does
not - then bisects the bracket until it is narrower than ``tolerance``
(relative). Attainment at a rate is the mean over the seeds. All searches
advance together, one round at a time, so their runs share the backend; every
run is cached like a sweep's, so a repeated or resumed search is cheap.

Outputs: ``capacity.csv`` (one row per configuration: the capacity, the first
failing rate, the attainment at both, the evaluations and a status), plus the
sweep tables and report of every evaluated run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator import atomic
from simulator.errors import ConfigError
from simulator.sweep import Progress, check_sweep_dir, execute_runs, write_tables
from simulator.sweep_plan import POINTS_DIR, ExperimentSource, PlannedRun, check_keys, plan_one
from simulator.sweep_spec import SEED_KEY, SweepSpec, value_label

DEFAULT_RATE_KEY = "workload.generator.arrivals.rate_per_s"
CAPACITY_CSV = "capacity.csv"


@dataclass(frozen=True)
class CapacityOptions:
    """How to search: the attainment ``target``, the ``rate_key`` varied, when to stop."""

    target: float = 0.9
    rate_key: str = DEFAULT_RATE_KEY
    tolerance: float = 0.05
    start_rate: float | None = None
    max_bracket_steps: int = 10

    def check(self) -> None:
        if not 0 < self.target <= 1:
            raise ConfigError(f"capacity target {self.target}: expected a fraction in (0, 1]")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"capacity tolerance {self.tolerance}: expected a fraction in (0, 1)")


class CapacitySearch:
    """Bracketing then bisection over the rate of one configuration.

    ``next_rate()`` gives the next rate to evaluate (None when done);
    ``observe(rate, attainment)`` feeds back the mean attainment there.
    """

    def __init__(self, start: float, target: float, tolerance: float, max_bracket_steps: int = 10) -> None:
        if not start > 0:
            raise ConfigError(f"capacity search: start rate must be positive, got {start}")
        self.start, self.target, self.tolerance = start, target, tolerance
        self.max_bracket_steps = max_bracket_steps
        self.low: float | None = None  # highest rate known to meet the target
        self.high: float | None = None  # lowest rate known to miss it
        self.observed: dict[float, float] = {}
        self.failed = False

    def next_rate(self) -> float | None:
        if self.failed:
            return None
        low, high = self.low, self.high
        if low is None and high is None:
            rate = self.start
        elif high is None:
            rate = None if self._bracket_steps() >= self.max_bracket_steps else low * 2
        elif low is None:
            rate = None if self._bracket_steps() >= self.max_bracket_steps else high / 2
        else:
            rate = None if (high - low) <= self.tolerance * high else (low + high) / 2
        return None if rate is None else float(f"{rate:.6g}")

    def observe(self, rate: float, attainment: float | None) -> None:
        if attainment is None or not np.isfinite(attainment):
            self.failed = True
            return
        self.observed[rate] = attainment
        if attainment >= self.target:
            self.low = rate if self.low is None else max(self.low, rate)
        else:
            self.high = rate if self.high is None else min(self.high, rate)

    @property
    def status(self) -> str:
        if self.failed:
            return "failed"
        if self.low is None:
            return "below_range"  # not even the lowest rate tried meets the target
        return "above_range" if self.high is None else "found"

    def _bracket_steps(self) -> int:
        return len(self.observed) - 1


@dataclass
class CapacityResult:
    """The capacity table, the number of runs behind it, and failed runs."""

    table: pd.DataFrame
    runs: int
    out_dir: Path
    failures: list[str] = field(default_factory=list)


def run_capacity(source: ExperimentSource, spec: SweepSpec, out_dir: Path, backend,
                 options: CapacityOptions = CapacityOptions(), *, quiet: bool = False,
                 report: bool = True) -> CapacityResult:
    """Search the capacity of every point of ``spec`` (its rate axis, if any, is replaced)."""
    options.check()
    out_dir = check_sweep_dir(out_dir)
    spec = _without_rate(spec, options.rate_key)
    seeds = spec.seeds or [int(source.data.get(SEED_KEY, 0) or 0)]
    configs = spec.points()
    start = options.start_rate or _start_rate(source, options.rate_key)
    _check_slo(source)
    check_keys(source, spec)
    searches = [CapacitySearch(start, options.target, options.tolerance, options.max_bracket_steps)
                for _ in configs]
    runs: list[PlannedRun] = []
    statuses: dict = {}
    point_ids: dict[tuple[int, float], int] = {}
    progress = Progress(None, quiet, desc="capacity")
    try:
        while True:
            batch = _next_round(source, configs, searches, seeds, options.rate_key, out_dir, point_ids)
            if not batch:
                break
            statuses.update(execute_runs([run for _, _, run in batch], backend, out_dir, progress))
            runs += [run for _, _, run in batch]
            _observe(out_dir, batch, statuses, searches)
    finally:
        progress.close()
    keys = [*spec.keys, options.rate_key]
    sweep = write_tables(out_dir, source, keys, runs, statuses,
                         extra={"capacity": {"rate_key": options.rate_key, "target": options.target}})
    table = capacity_table(configs, spec.keys, searches)
    atomic.write_csv(out_dir / CAPACITY_CSV, table)
    if report:
        from simulator.report.sweep_report import write_sweep_report

        write_sweep_report(out_dir)
    return CapacityResult(table, len(runs), out_dir, sweep.failures)


def _next_round(source, configs, searches, seeds, rate_key, out_dir, point_ids):
    batch = []
    for index, (params, search) in enumerate(zip(configs, searches)):
        rate = search.next_rate()
        if rate is None:
            continue
        point = point_ids.setdefault((index, rate), len(point_ids))
        for seed in seeds:
            batch.append((index, rate, plan_one(source, {**params, rate_key: rate}, seed, point, out_dir)))
    return batch


def _observe(out_dir: Path, batch, statuses, searches) -> None:
    by_search: dict[tuple[int, float], list[float | None]] = {}
    for index, rate, run in batch:
        outcome = statuses.get(run.key)
        value = None
        if outcome is None or outcome.ok:
            summary = json.loads((out_dir / POINTS_DIR / run.key / "summary.json").read_text())
            value = (summary.get("slo") or {}).get("attainment")
        by_search.setdefault((index, rate), []).append(value)
    for (index, rate), values in by_search.items():
        mean = None if any(v is None for v in values) else float(np.mean(values))
        searches[index].observe(rate, mean)


def capacity_table(configs: list[dict[str, Any]], keys: list[str], searches: list[CapacitySearch]) -> pd.DataFrame:
    """One row per configuration: its values, capacity, first failing rate, attainments, status."""
    rows = []
    for params, search in zip(configs, searches):
        row = {key: value_label(params.get(key)) for key in keys}
        row.update(capacity=search.low, attainment_at_capacity=search.observed.get(search.low),
                   first_failing_rate=search.high, attainment_at_failing=search.observed.get(search.high),
                   target=search.target, evaluations=len(search.observed), status=search.status)
        rows.append(row)
    return pd.DataFrame(rows)


def _without_rate(spec: SweepSpec, rate_key: str) -> SweepSpec:
    if any(rate_key in group for group in spec.zips):
        raise ConfigError(f"capacity search varies '{rate_key}' itself; remove it from the zip groups")
    return SweepSpec({k: v for k, v in spec.grid.items() if k != rate_key}, list(spec.zips), list(spec.seeds))


def _start_rate(source: ExperimentSource, rate_key: str) -> float:
    node: Any = source.data
    for part in rate_key.split("."):
        node = node[int(part)] if isinstance(node, list) and part.isdigit() else (
            node.get(part) if isinstance(node, dict) else None)
        if node is None:
            break
    if isinstance(node, bool) or not isinstance(node, (int, float)) or node <= 0:
        raise ConfigError(f"{source.path}: capacity search needs a positive start rate at '{rate_key}'")
    return float(node)


def _check_slo(source: ExperimentSource) -> None:
    slo = source.data.get("slo") or {}
    if slo.get("ttft_s") is None and slo.get("tpot_s") is None:
        raise ConfigError(f"{source.path}: slo: capacity search needs an SLO (slo.ttft_s and/or slo.tpot_s)")
