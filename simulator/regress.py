"""The regression gate: fresh runs compared with committed baselines under per-metric tolerances.

A baseline is a JSON file, one per experiment (``experiments/baselines/<name>.json``)::

    {"format": "servesim-baseline/1",
     "experiment": "../quickstart_fast.yaml",          # relative to this file
     "overrides": [],                                  # --set values the run uses
     "servesim": "0.1.0",                              # version that wrote the values
     "tolerances": {"default": {"rel": 1e-6, "abs": 1e-9},
                    "ttft_s.p99": {"rel": 0.01}},       # per metric; missing parts fall back to default
     "metrics": {"requests.completed": 500, "ttft_s.p99": 0.1102, ...}}

``metrics`` holds every numeric summary value (dotted, as in ``results.csv``)
except wall-clock ones. A metric passes when both values are null, or when
``|current - baseline| <= max(abs, rel * |baseline|)``. A metric of the
baseline that the run no longer reports is a regression, and so is a metric
the run reports that the baseline lacks (the baseline is stale: re-baseline
with ``--update``). ``updated`` rewrites the values and keeps the tolerances.
A baseline file with another shape (unknown keys, no ``metrics``, a value that
is not a finite number or null) is bad input, not a regression.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator import __version__, atomic
from simulator.errors import ConfigError, ServesimError, located
from simulator.sweep_tables import flatten_metrics

FORMAT = "servesim-baseline/1"
KEYS = ("format", "experiment", "overrides", "servesim", "tolerances", "metrics")
DEFAULT_TOLERANCE = {"rel": 1e-6, "abs": 1e-9}


@dataclass(frozen=True)
class Tolerance:
    """A metric passes within ``max(abs, rel * |baseline|)``."""

    rel: float
    abs: float

    def allows(self, baseline: float, current: float) -> bool:
        return abs(current - baseline) <= max(self.abs, self.rel * abs(baseline))

    def describe(self) -> str:
        return f"rel {self.rel:g}, abs {self.abs:g}"


@dataclass
class Baseline:
    """A baseline file's contents."""

    path: Path
    experiment: Path
    overrides: list[str]
    tolerances: dict[str, dict[str, float]]
    metrics: dict[str, float | None]
    version: str = __version__

    def tolerance(self, metric: str) -> Tolerance:
        merged = {**DEFAULT_TOLERANCE, **self.tolerances.get("default", {}), **self.tolerances.get(metric, {})}
        return Tolerance(float(merged["rel"]), float(merged["abs"]))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "experiment": _relative(self.experiment, self.path.parent),
                "overrides": self.overrides, "servesim": self.version, "tolerances": self.tolerances,
                "metrics": self.metrics}


@dataclass(frozen=True)
class Difference:
    """One metric out of tolerance (or missing)."""

    metric: str
    baseline: float | None
    current: float | None
    tolerance: Tolerance

    @property
    def change(self) -> str:
        if not _number(self.baseline) or not _number(self.current):
            return "n/a"
        delta = self.current - self.baseline
        relative = f" ({delta / abs(self.baseline) * 100:+.3g}%)" if self.baseline else ""
        return f"{delta:+.6g}{relative}"


@dataclass
class Comparison:
    """The outcome of checking one run against its baseline."""

    name: str
    checked: int
    differences: list[Difference] = field(default_factory=list)
    new_metrics: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.differences and not self.new_metrics


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file; a missing or malformed one is a ``ServesimError``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServesimError(located(path, "", "baseline not found; create it with --update")) from None
    except UnicodeDecodeError:
        raise ServesimError(located(path, "", "not UTF-8 text; expected a JSON baseline file")) from None
    except json.JSONDecodeError as err:
        raise ServesimError(located(path, f"line {err.lineno}", f"invalid JSON: {err.msg}")) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ServesimError(located(path, "format", f"expected \"{FORMAT}\""))
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ServesimError(located(path, unknown[0], f"unknown key; a baseline holds {', '.join(KEYS)}"))
    for key, kind in (("experiment", str), ("metrics", dict), ("tolerances", dict), ("overrides", list),
                      ("servesim", str)):
        if key in data and not isinstance(data[key], kind):
            raise ServesimError(located(path, key, f"expected a {kind.__name__}"))
    if "experiment" not in data:
        raise ServesimError(located(path, "experiment", "missing: the experiment file this baseline is for"))
    if not data["experiment"].strip() or "\0" in data["experiment"]:
        raise ServesimError(located(path, "experiment", "expected the path of an experiment file"))
    if "metrics" not in data:
        raise ServesimError(located(path, "metrics", "missing: the metric values; re-create it with --update"))
    for index, override in enumerate(data.get("overrides", [])):
        if not isinstance(override, str):
            raise ServesimError(located(path, f"overrides.{index}", "expected a KEY=VALUE string"))
    for metric, value in data["metrics"].items():
        if value is not None and not _number(value):
            raise ServesimError(located(path, f"metrics.{metric}",
                                        f"expected a finite number or null, got {json.dumps(value)[:40]}"))
    _check_tolerances(path, data.get("tolerances", {}))
    return Baseline(path, (path.parent / data["experiment"]).resolve(), list(data.get("overrides", [])),
                    dict(data.get("tolerances", {})), dict(data["metrics"]), str(data.get("servesim", "?")))


def compare(baseline: Baseline, summary: dict[str, Any], name: str) -> Comparison:
    """Check a run's summary against ``baseline``."""
    current = flatten_metrics(summary)
    result = Comparison(name, len(baseline.metrics))
    for metric, expected in baseline.metrics.items():
        tolerance = baseline.tolerance(metric)
        if metric not in current:
            result.differences.append(Difference(metric, expected, None, tolerance))
            continue
        value = current[metric]
        if not _same(expected, value, tolerance):
            result.differences.append(Difference(metric, expected, value, tolerance))
    result.new_metrics = sorted(set(current) - set(baseline.metrics))
    return result


def updated(baseline: Baseline | None, path: Path, experiment: Path, overrides: list[str],
            summary: dict[str, Any]) -> Baseline:
    """A baseline with the run's values, keeping ``baseline``'s tolerances if there is one."""
    tolerances = baseline.tolerances if baseline else {"default": dict(DEFAULT_TOLERANCE)}
    return Baseline(Path(path), Path(experiment).resolve(), list(overrides), tolerances,
                    flatten_metrics(summary), __version__)


def write_baseline(baseline: Baseline) -> Path:
    return atomic.write_json(baseline.path, baseline.to_json())


def diff_table(comparison: Comparison) -> str:
    """The differences of a failed comparison as a Markdown table."""
    lines = ["| metric | baseline | current | change | tolerance |", "|---|---|---|---|---|"]
    for d in comparison.differences:
        lines.append(f"| {d.metric} | {_show(d.baseline)} | {_show(d.current)} | {d.change} | "
                     f"{d.tolerance.describe()} |")
    return "\n".join(lines)


def _same(expected: Any, value: Any, tolerance: Tolerance) -> bool:
    if expected is None or value is None:
        return expected is None and value is None
    if not (_number(expected) and _number(value)):
        return expected == value
    return tolerance.allows(float(expected), float(value))


def _check_tolerances(path: Path, tolerances: dict[str, Any]) -> None:
    for metric, spec in tolerances.items():
        if not isinstance(spec, dict) or set(spec) - {"rel", "abs"}:
            raise ServesimError(located(path, f"tolerances.{metric}", "expected {rel: ..., abs: ...}"))
        for kind, value in spec.items():
            if not _number(value) or value < 0:
                raise ConfigError(located(path, f"tolerances.{metric}.{kind}", "expected a number >= 0"))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    return "missing" if value is None else f"{value:.6g}" if _number(value) else str(value)


def _relative(target: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix()
