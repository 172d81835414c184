"""The sweep's tables: one row per run, and per point the mean and 95% CI over seeds.

``results.csv`` has a row per (point, seed): the point's index, each varied
key's value (policies as ``jsq(load=tokens)``), the seed, the run's cache
key (its folder under ``points/``), ``status`` (``ok`` or ``failed``), the
error, every numeric summary metric as a dotted column (``ttft_s.p99``,
``slo.attainment``, ...), and ``wall_s``. ``points.csv`` has a row per point:
the values, ``n`` successful seeds, ``failed``, and per metric the mean over
seeds and ``<metric>.ci95``, the half-width of the 95% confidence interval of
that mean (Student's t with n - 1 degrees of freedom; empty when n < 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from simulator.sweep_spec import value_label

# Summary leaves that are not results of the simulated system (or are columns already).
NON_METRICS = frozenset({"experiment", "version", "seed", "sim.wall_s", "sim.requests_per_wall_s"})
RUN_COLUMNS = ("point", "seed", "run", "status", "error")
CI_SUFFIX = ".ci95"


def flatten_metrics(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Numeric leaves of a summary as ``{"ttft_s.p99": 0.1, ...}`` (booleans and text skipped)."""
    flat: dict[str, float | None] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}."))
        elif name in NON_METRICS or isinstance(value, (bool, str, list)):
            continue
        elif value is None or isinstance(value, (int, float)):
            flat[name] = value
    return flat


def results_frame(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> pd.DataFrame:
    """One row per run: ``point``, the varied keys, then the run columns, metrics and ``wall_s``.

    Each row maps ``params`` (key -> value), ``point``, ``seed``, ``run``, ``status``,
    ``error``, ``metrics`` (flat dict or None) and ``wall_s``.
    """
    records = []
    for row in rows:
        record = {"point": row["point"]}
        record.update({key: value_label(row["params"].get(key)) for key in keys})
        record.update({name: row.get(name) for name in RUN_COLUMNS[1:]})
        record.update(row.get("metrics") or {})
        record["wall_s"] = row.get("wall_s")
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=["point", *keys, *RUN_COLUMNS[1:], "wall_s"])
    wall = frame.pop("wall_s")
    frame["wall_s"] = wall
    return frame.sort_values(["point", "seed"], kind="stable").reset_index(drop=True)


def metric_columns(results: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The metric columns of a results table (everything but the keys and run columns)."""
    skip = set(keys) | set(RUN_COLUMNS) | {"wall_s"}
    return [c for c in results.columns if c not in skip]


def points_frame(results: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per point: the varied values, ``n``, ``failed``, and each metric's mean and ``.ci95``."""
    metrics = metric_columns(results, keys)
    records = []
    for point, group in results.groupby("point", sort=True):
        ok = group[group["status"] == "ok"]
        record: dict[str, Any] = {"point": point, **{key: group[key].iloc[0] for key in keys}}
        record.update(n=len(ok), failed=int((group["status"] != "ok").sum()))
        for name in metrics:
            mean, half = mean_ci95(ok[name].to_numpy(dtype=np.float64))
            record[name], record[name + CI_SUFFIX] = mean, half
        records.append(record)
    columns = ["point", *keys, "n", "failed"] + [c for m in metrics for c in (m, m + CI_SUFFIX)]
    return pd.DataFrame.from_records(records, columns=columns)


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean of the finite values and the 95% CI half-width (t-distribution); NaN where undefined."""
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan
    sem = float(values.std(ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.975, n - 1) * sem)
