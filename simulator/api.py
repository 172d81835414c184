"""The Python API for notebooks: load an experiment, change it, run or sweep it, get DataFrames.

    from simulator import api

    exp = api.load("experiments/quickstart.yaml").set({"workload.num_requests": 500})
    run = exp.run()                       # a Run: .summary, .metrics, .requests, .timeseries
    run.plot_cdf("ttft_s")
    sweep = exp.sweep(grid={"workload.generator.arrivals.rate_per_s": [10, 20]}, seeds=[0, 1])
    sweep.points                          # DataFrame: mean and 95% CI per point
    sweep.plot("slo.attainment")
    cap = exp.capacity(grid={"cluster.instances.0.count": [4, 6]}, target=0.9)

Everything goes through the same code as the command line: the same
validation (a bad key raises ``ServesimError`` with the one-line message), the
same cached run folders, the same tables and reports. Figures are returned as
matplotlib ``Figure`` objects, which notebooks display inline.

Local process pools re-import the calling script's main module (spawn and
forkserver), so a plain script that sweeps with ``workers > 1`` must guard its
entry point with ``if __name__ == "__main__":``; notebooks need nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from simulator.errors import ConfigError
from simulator.sweep_plan import ExperimentSource
from simulator.sweep_spec import SEED_KEY, ZIP_KEY, SweepSpec, spec_from_mapping
from simulator.sweep_tables import CI_SUFFIX, flatten_metrics

T = TypeVar("T")
BACKENDS = ("local", "ray")
CDF_METRICS = ("ttft_s", "tpot_s", "e2e_s", "queue_s")


@dataclass(frozen=True)
class Experiment:
    """An experiment file with overrides applied; immutable (``set`` returns a new one)."""

    source: ExperimentSource

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration (every default filled in), as plain data."""
        from simulator.config import resolved_dict

        return resolved_dict(self.source.config())

    def set(self, values: Mapping[str, Any] | None = None, **top_level: Any) -> Experiment:
        """A copy with dotted keys set, e.g. ``set({"cluster.instances.0.count": 6})`` or ``set(seed=3)``."""
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"set(values): expected a mapping of dotted keys to values, got "
                              f"{type(values).__name__}")
        changed = self.source.with_values({**(values or {}), **top_level}, label="set key")
        changed.config()  # validate now, so a bad value fails here and not in a worker
        return Experiment(changed)

    def run(self, out_dir: str | Path | None = None, report: bool = False) -> Run:
        """Run once; ``out_dir`` also writes the run folder (and its report if asked)."""
        from simulator.config import resolve
        from simulator.hardware import DEFAULT_CATALOG
        from simulator.runner import run_experiment, write_outputs

        config = self.source.config()
        result = run_experiment(resolve(config, self.source.path, DEFAULT_CATALOG))
        if out_dir is not None:
            write_outputs(result, Path(out_dir), with_report=report)
        return Run(result.summary, result.requests, result.timeseries, Path(out_dir) if out_dir else None)

    def sweep(self, grid: Mapping[str, Sequence[Any]] | None = None, *, zip: Sequence[Mapping] = (),
              seeds: Sequence[int] | None = None, out_dir: str | Path | None = None, workers: int | None = 1,
              backend: str = "local", address: str | None = None, report: bool = True,
              use_file_sweep: bool = False) -> Sweep:
        """Run a sweep; returns its tables. ``grid``/``zip``/``seeds`` as in the YAML ``sweep:`` block.

        ``use_file_sweep`` starts from the file's own ``sweep:`` block. Without ``out_dir`` the
        runs are cached in a fresh temporary folder.
        """
        from simulator.sweep import run_sweep
        from simulator.sweep_backends import make_backend

        spec = self._spec(grid, zip, seeds, use_file_sweep, "sweep")
        _check_workers(workers)
        if backend not in BACKENDS:
            raise ConfigError(f"sweep(backend={backend!r}): expected one of {', '.join(BACKENDS)}")
        chosen = make_backend(backend, workers, address)
        result, out = _in_folder(out_dir, f"servesim-{self.name}-sweep-",
                                 lambda out: run_sweep(self.source, spec, out, chosen, quiet=True, report=report))
        return Sweep(result.results, result.points, result.keys, out, result.failures)

    def capacity(self, grid: Mapping[str, Sequence[Any]] | None = None, *, zip: Sequence[Mapping] = (),
                 seeds: Sequence[int] | None = None, target: float = 0.9,
                 rate_key: str | None = None, tolerance: float = 0.05, start_rate: float | None = None,
                 out_dir: str | Path | None = None, workers: int | None = 1, report: bool = False) -> pd.DataFrame:
        """Each configuration's highest rate meeting the SLO attainment ``target`` (one row each)."""
        from simulator.capacity import DEFAULT_RATE_KEY, CapacityOptions, run_capacity
        from simulator.sweep_backends import make_backend

        spec = self._spec(grid, zip, seeds, False, "capacity")
        for name, value, optional in (("target", target, False), ("tolerance", tolerance, False),
                                      ("start_rate", start_rate, True)):
            if not (optional and value is None) and not _is_number(value):
                raise ConfigError(f"capacity({name}={value!r}): expected a number")
        if rate_key is not None and not isinstance(rate_key, str):
            raise ConfigError(f"capacity(rate_key={rate_key!r}): expected a dotted key (a string)")
        _check_workers(workers)
        options = CapacityOptions(target, rate_key or DEFAULT_RATE_KEY, tolerance, start_rate)
        backend = make_backend("local", workers)
        result, _ = _in_folder(out_dir, f"servesim-{self.name}-capacity-",
                               lambda out: run_capacity(self.source, spec, out, backend, options, quiet=True,
                                                        report=report))
        return result.table

    def _spec(self, grid, zips, seeds, use_file_sweep: bool, caller: str) -> SweepSpec:
        """The sweep of ``grid``/``zip``/``seeds``, checked here so errors name ``caller``'s arguments."""
        spec = self.source.spec if use_file_sweep else SweepSpec()
        grid = _values_by_key(grid, f"{caller}(grid=...)")
        if ZIP_KEY in grid:
            raise ConfigError(f"{caller}(grid=...): give zipped keys as zip=[{{...}}], not as a grid key 'zip'")
        if SEED_KEY in grid:  # the replication axis, as in the YAML sweep block
            if seeds is not None:
                raise ConfigError(f"{caller}(): seeds given twice, as seeds= and as grid key 'seed'")
            seeds = grid.pop(SEED_KEY)
        zips = () if zips is None else zips
        if isinstance(zips, (str, bytes, Mapping)) or not isinstance(zips, (Sequence, np.ndarray)):
            raise ConfigError(f"{caller}(zip=...): expected a list of mappings (keys to lists of values), got "
                              f"{type(zips).__name__}")
        groups = [_values_by_key(group, f"{caller}(zip[{index}])") for index, group in enumerate(zips)]
        for index, group in enumerate(groups):
            if SEED_KEY in group or ZIP_KEY in group:
                raise ConfigError(f"{caller}(zip[{index}]): '{SEED_KEY}' cannot be zipped; give it as seeds=[...]")
            if len({len(values) for values in group.values()}) > 1:
                detail = ", ".join(f"{key} has {len(values)}" for key, values in group.items())
                raise ConfigError(f"{caller}(zip[{index}]): zipped keys need equally many values ({detail})")
        extra: dict[str, Any] = dict(grid)
        if groups:
            extra[ZIP_KEY] = groups
        added = spec_from_mapping(extra, caller)
        for key, values in added.grid.items():
            spec = spec.with_grid(key, values)
        for group in added.zips:
            spec = spec.with_zip(group)
        return spec if seeds is None else spec.with_grid(SEED_KEY, _seed_list(seeds, f"{caller}(seeds=...)"))


@dataclass
class Run:
    """One run's results: ``summary`` (dict), ``requests`` and ``timeseries`` (DataFrames)."""

    summary: dict[str, Any]
    requests: pd.DataFrame
    timeseries: pd.DataFrame | None
    out_dir: Path | None = None

    @property
    def metrics(self) -> pd.Series:
        """Every numeric summary value as a Series indexed by dotted name (``ttft_s.p99``)."""
        return pd.Series(flatten_metrics(self.summary), dtype="float64")

    def plot_cdf(self, metric: str = "ttft_s") -> Figure:
        """CDF of ``ttft_s``, ``tpot_s``, ``e2e_s`` or ``queue_s`` over completed requests."""
        from simulator.metrics.summary import add_latency_columns
        from simulator.report import figures

        if metric not in CDF_METRICS:
            raise ConfigError(f"plot_cdf({metric!r}): expected one of {', '.join(CDF_METRICS)}")
        done = add_latency_columns(self.requests[self.requests["status"] == "finished"])
        slo = (self.summary.get("slo") or {}).get(metric)
        return figures.latency_cdf(done[metric].to_numpy(), name=metric, slo_s=slo)

    def plot_timeseries(self) -> Figure:
        """Per-instance KV use, waiting requests and running batch over time."""
        from simulator.report import figures

        if self.timeseries is None:
            raise ConfigError("plot_timeseries(): this run was not sampled (sim.sample_interval_s is null)")
        return figures.timeseries(self.timeseries, title=f"{self.summary.get('experiment')}: instances over time")


@dataclass
class Sweep:
    """A sweep's tables: ``results`` (one row per run) and ``points`` (mean and 95% CI per point)."""

    results: pd.DataFrame
    points: pd.DataFrame
    keys: list[str]
    out_dir: Path
    failures: list[str]

    def plot(self, metric: str = "slo.attainment", x: str | None = None) -> Figure:
        """Mean of ``metric`` against ``x`` (default: the swept rate) per series, with 95% bands."""
        from simulator.report import figures
        from simulator.report.comparison import Layout

        if metric not in self.points.columns or metric + CI_SUFFIX not in self.points.columns:
            raise ConfigError(f"plot({metric!r}): not a metric of this sweep's points table")
        layout = Layout.of(self.keys, x)
        if layout.x_key is None:
            raise ConfigError(f"plot(x={x!r}): no x axis; give x= one of {self.keys}")
        points = layout.with_series(self.points)
        series = {name: (g[layout.x_key].to_numpy(float), g[metric].to_numpy(float),
                         g[metric + CI_SUFFIX].to_numpy(float)) for name, g in points.groupby("series", sort=False)}
        return figures.metric_vs_x(series, xlabel=layout.x_key, ylabel=metric, title=f"{metric} against {x or 'rate'}")

    def report_path(self) -> Path:
        return self.out_dir / "report.html"


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Load an experiment file, optionally with dotted-key overrides."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"load(path): expected the path of an experiment file (str or Path), got "
                          f"{type(path).__name__}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"load(overrides): expected a mapping of dotted keys to values, got "
                          f"{type(overrides).__name__}")
    experiment = Experiment(ExperimentSource.load(path))
    return experiment.set(overrides) if overrides else experiment


def open_sweep(folder: str | Path) -> Sweep:
    """The tables of a finished sweep folder."""
    from simulator.report.sweep_report import read_sweep

    folder = Path(folder)
    manifest, results, points = read_sweep(folder)
    failed = results[results["status"] != "ok"]
    return Sweep(results, points, list(manifest["keys"]), folder,
                 [f"point {r.point} seed {r.seed}: {r.error}" for r in failed.itertuples()])


def open_run(folder: str | Path) -> Run:
    """The results of a finished run folder."""
    from simulator.report.files import read_requests, read_summary, read_timeseries

    folder = Path(folder)
    summary = read_summary(folder / "summary.json")
    arrived = (summary.get("requests") or {}).get("arrived")
    requests = read_requests(folder / "requests.csv", expected_rows=arrived if isinstance(arrived, int) else None)
    return Run(summary, requests, read_timeseries(folder / "timeseries.csv"), folder)


def compare(runs: Mapping[str, Run]) -> pd.DataFrame:
    """Metrics of labelled runs side by side (one column per run), plus each one's change vs the first."""
    if not isinstance(runs, Mapping) or not runs:
        raise ConfigError("compare(runs): expected a non-empty mapping of labels to Run objects")
    for label, run in runs.items():
        if not isinstance(run, Run):
            raise ConfigError(f"compare(runs): {label!r} is a {type(run).__name__}, not a Run")
    table = pd.DataFrame({label: run.metrics for label, run in runs.items()})
    base = table.iloc[:, 0]
    for label in list(table.columns)[1:]:
        table[f"{label} vs {table.columns[0]}"] = (table[label] - base) / base.abs()
    return table


# ------------------------------------------------------------ argument checks
def _values_by_key(grid: Any, where: str) -> dict[str, list[Any]]:
    """``grid`` (None, or dotted key -> a list of values) as a dict of lists; a string is no list."""
    if grid is None:
        return {}
    if not isinstance(grid, Mapping):
        raise ConfigError(f"{where}: expected a mapping of dotted keys to lists of values, got "
                          f"{type(grid).__name__}")
    values_by_key = {}
    for key, values in grid.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: key {key!r}: expected a dotted key (a string)")
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (Sequence, np.ndarray)):
            raise ConfigError(f"{where}: '{key}': expected a list of values, got {type(values).__name__} "
                              f"{values!r:.40}")
        if not len(values):
            raise ConfigError(f"{where}: '{key}': expected a non-empty list of values")
        values_by_key[key] = list(values)
    return values_by_key


def _seed_list(seeds: Any, where: str) -> list[int]:
    if isinstance(seeds, (str, bytes, Mapping)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise ConfigError(f"{where}: expected a list of seeds, got {type(seeds).__name__}")
    values = [s.item() if isinstance(s, np.generic) else s for s in seeds]
    if not values:
        raise ConfigError(f"{where}: expected at least one seed")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ConfigError(f"{where}: seeds must be non-negative integers, got {values!r:.60}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: seeds repeat ({values!r:.60})")
    return values


def _check_workers(workers: Any) -> None:
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"workers={workers!r}: expected a positive number of workers (None: every CPU)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _in_folder(out_dir: str | Path | None, prefix: str, work: Callable[[Path], T]) -> tuple[T, Path]:
    """``work(folder)`` in ``out_dir``, or in a fresh temporary folder that is removed if ``work`` fails."""
    if out_dir is not None:
        return work(Path(out_dir)), Path(out_dir)
    out = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return work(out), out
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
