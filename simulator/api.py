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

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from simulator.sweep_plan import ExperimentSource
from simulator.sweep_spec import SweepSpec, spec_from_mapping
from simulator.sweep_tables import CI_SUFFIX, flatten_metrics


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
        changed = self.source.with_values({**(values or {}), **top_level})
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

        spec = self._spec(grid, zip, seeds, use_file_sweep)
        out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"servesim-{self.name}-sweep-"))
        result = run_sweep(self.source, spec, out, make_backend(backend, workers, address), quiet=True,
                           report=report)
        return Sweep(result.results, result.points, result.keys, out, result.failures)

    def capacity(self, grid: Mapping[str, Sequence[Any]] | None = None, *, zip: Sequence[Mapping] = (),
                 seeds: Sequence[int] | None = None, target: float = 0.9,
                 rate_key: str | None = None, tolerance: float = 0.05, start_rate: float | None = None,
                 out_dir: str | Path | None = None, workers: int | None = 1, report: bool = False) -> pd.DataFrame:
        """Each configuration's highest rate meeting the SLO attainment ``target`` (one row each)."""
        from simulator.capacity import DEFAULT_RATE_KEY, CapacityOptions, run_capacity
        from simulator.sweep_backends import make_backend

        spec = self._spec(grid, zip, seeds, False)
        options = CapacityOptions(target, rate_key or DEFAULT_RATE_KEY, tolerance, start_rate)
        out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"servesim-{self.name}-capacity-"))
        return run_capacity(self.source, spec, out, make_backend("local", workers), options, quiet=True,
                            report=report).table

    def _spec(self, grid, zips, seeds, use_file_sweep: bool) -> SweepSpec:
        spec = self.source.spec if use_file_sweep else SweepSpec()
        extra = dict(grid or {})
        if zips:
            extra["zip"] = [dict(group) for group in zips]
        if seeds is not None:
            extra["seed"] = list(seeds)
        added = spec_from_mapping({k: list(v) if k != "zip" else v for k, v in extra.items()}, "sweep")
        for key, values in added.grid.items():
            spec = spec.with_grid(key, values)
        for group in added.zips:
            spec = spec.with_zip(group)
        return spec.with_grid("seed", added.seeds) if added.seeds else spec


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

        done = add_latency_columns(self.requests[self.requests["status"] == "finished"])
        slo = (self.summary.get("slo") or {}).get(metric)
        return figures.latency_cdf(done[metric].to_numpy(), name=metric, slo_s=slo)

    def plot_timeseries(self) -> Figure:
        """Per-instance KV use, waiting requests and running batch over time."""
        from simulator.report import figures

        if self.timeseries is None:
            raise ValueError("this run was not sampled (sim.sample_interval_s is null)")
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

        layout = Layout.of(self.keys, x)
        if layout.x_key is None:
            raise ValueError(f"no x axis: give x= one of {self.keys}")
        points = layout.with_series(self.points)
        series = {name: (g[layout.x_key].to_numpy(float), g[metric].to_numpy(float),
                         g[metric + CI_SUFFIX].to_numpy(float)) for name, g in points.groupby("series", sort=False)}
        return figures.metric_vs_x(series, xlabel=layout.x_key, ylabel=metric, title=f"{metric} against {x or 'rate'}")

    def report_path(self) -> Path:
        return self.out_dir / "report.html"


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Load an experiment file, optionally with dotted-key overrides."""
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
    from simulator.report.markdown import read_summary, read_timeseries

    folder = Path(folder)
    summary = read_summary(folder / "summary.json")
    return Run(summary, pd.read_csv(folder / "requests.csv"), read_timeseries(folder / "timeseries.csv"), folder)


def compare(runs: Mapping[str, Run]) -> pd.DataFrame:
    """Metrics of labelled runs side by side (one column per run), plus each one's change vs the first."""
    table = pd.DataFrame({label: run.metrics for label, run in runs.items()})
    base = table.iloc[:, 0]
    for label in list(table.columns)[1:]:
        table[f"{label} vs {table.columns[0]}"] = (table[label] - base) / base.abs()
    return table
