"""Tables that compare points of a sweep: values with CIs, and deltas against a baseline.

Pure functions from the ``points.csv`` table (plus a ``Layout`` saying which
key is the x axis and which keys make a series) to rows of formatted strings.
The baseline of each comparison is the first series at the same x value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from simulator.sweep_spec import short_key
from simulator.sweep_tables import CI_SUFFIX

RATE_SUFFIX = "rate_per_s"


@dataclass(frozen=True)
class Metric:
    """A summary column, how to show it, and whether lower is better."""

    column: str
    label: str
    scale: float = 1.0
    percent: bool = False


COMPARED = (
    Metric("ttft_s.p99", "TTFT p99 (ms)", 1e3), Metric("tpot_s.p99", "TPOT p99 (ms)", 1e3),
    Metric("e2e_s.p99", "E2E p99 (ms)", 1e3), Metric("slo.attainment", "SLO attainment", percent=True),
    Metric("goodput.requests_per_s", "goodput (req/s)"),
    Metric("throughput.output_tokens_per_s", "output tokens/s"),
    Metric("cost.usd_per_million_output_tokens", "USD per M output tokens"),
)
ENERGY_COST = (
    Metric("energy.joules", "energy (J)"), Metric("energy.joules_per_output_token", "J per output token"),
    Metric("cost.usd", "cost (USD)"), Metric("cost.usd_per_million_output_tokens", "USD per M output tokens"),
)


@dataclass(frozen=True)
class Layout:
    """Which varied key is the x axis (a rate, if any) and which keys label the series."""

    x_key: str | None
    series_keys: tuple[str, ...]

    @classmethod
    def of(cls, keys: Sequence[str], x_key: str | None = None) -> Layout:
        if x_key is None:
            x_key = next((k for k in keys if k.endswith(RATE_SUFFIX)), None)
        return cls(x_key if x_key in keys else None, tuple(k for k in keys if k != x_key))

    def series_label(self, row: pd.Series | dict[str, Any]) -> str:
        if not self.series_keys:
            return "all"
        return ", ".join(f"{short_key(k)}={_plain(row[k])}" for k in self.series_keys)

    def with_series(self, points: pd.DataFrame) -> pd.DataFrame:
        """``points`` with a ``series`` column (labels in order of first appearance)."""
        labels = [self.series_label(row) for _, row in points.iterrows()]
        frame = points.copy()  # also defragments a wide table read from CSV
        frame["series"] = labels
        return frame


def fmt_value(value: Any, metric: Metric, ci: Any = None) -> str:
    """``value`` scaled and formatted, with ``± ci`` when the CI is known."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    scale = 100.0 if metric.percent else metric.scale
    text = f"{value * scale:.4g}" + ("%" if metric.percent else "")
    if ci is not None and isinstance(ci, (int, float)) and math.isfinite(ci):
        text += f" ± {ci * scale:.2g}" + ("%" if metric.percent else "")
    return text


def point_rows(points: pd.DataFrame, layout: Layout, metrics: Sequence[Metric]) -> tuple[list[str], list[list[str]]]:
    """Each point's key values, seed count and metric means ± 95% CI."""
    keys = ([layout.x_key] if layout.x_key else []) + list(layout.series_keys)
    header = [short_key(k) for k in keys] + ["seeds"] + [m.label for m in metrics]
    rows = []
    for _, row in points.iterrows():
        cells = [str(_plain(row[k])) for k in keys] + [str(int(row["n"]))]
        cells += [fmt_value(_get(row, m.column), m, _get(row, m.column + CI_SUFFIX)) for m in metrics]
        rows.append(cells)
    return header, rows


def delta_rows(points: pd.DataFrame, layout: Layout,
               metrics: Sequence[Metric] = COMPARED) -> tuple[list[str], list[list[str]]]:
    """Per x value, every series with each metric and its change relative to the first series."""
    frame = layout.with_series(points)
    header = ([short_key(layout.x_key)] if layout.x_key else []) + ["series"] + [m.label for m in metrics]
    rows = []
    groups = frame.groupby(layout.x_key, sort=True) if layout.x_key else [(None, frame)]
    for x, group in groups:
        base = group.iloc[0]
        for _, row in group.iterrows():
            cells = ([str(_plain(x))] if layout.x_key else []) + [row["series"]]
            for m in metrics:
                value = _get(row, m.column)
                cells.append(fmt_value(value, m) + _delta(value, _get(base, m.column), row is base or
                                                            row.name == base.name))
            rows.append(cells)
    return header, rows


def _delta(value: Any, base: Any, is_base: bool) -> str:
    if is_base:
        return " (base)"
    if not _finite(value) or not _finite(base) or base == 0:
        return ""
    return f" ({(value - base) / abs(base) * 100:+.1f}%)"


def _get(row: pd.Series, column: str) -> Any:
    return row[column] if column in row.index else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
