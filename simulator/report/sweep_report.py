"""The report of a sweep, a capacity search or a set of runs: comparison across configurations.

``write_sweep_report(dir)`` reads ``sweep.json``, ``results.csv``,
``points.csv``, ``capacity.csv`` (if any) and the run folders they name, and
writes ``report.md``, ``report.html`` and the figures: TTFT/TPOT/E2E CDFs per
series (pooled over seeds), goodput and SLO attainment against the rate with
95% confidence bands, per-instance time series of one run per series, the
energy and cost table, and the comparison table with relative deltas.
``write_comparison(run_dirs, out_dir)`` compares finished run folders the
same way. Nothing here imports the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator import __version__, atomic
from simulator.report import figures
from simulator.report.comparison import COMPARED, ENERGY_COST, Layout, delta_rows, point_rows
from simulator.report.definitions import DEFINITIONS_MD
from simulator.report.document import Document
from simulator.report.files import read_sweep_manifest, read_sweep_tables, read_table
from simulator.report.markdown import read_completed_requests, read_summary, read_timeseries
from simulator.sweep import check_sweep_dir
from simulator.sweep_spec import short_key
from simulator.sweep_tables import CI_SUFFIX, flatten_metrics, points_frame, results_frame

LATENCIES = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E latency"))
AGAINST_RATE = (("goodput.requests_per_s", "goodput (requests/s)", "goodput_vs_rate.png"),
                ("slo.attainment", "SLO attainment", "attainment_vs_rate.png"))
MAX_CDF_PANELS = 4
MAX_TIMESERIES = 6


def write_sweep_report(sweep_dir: Path) -> Path:
    """Write ``report.md``, ``report.html`` and figures for a sweep folder; returns ``report.md``."""
    sweep_dir = Path(sweep_dir)
    manifest, results, points = read_sweep(sweep_dir)
    capacity_info = manifest.get("capacity") or {}
    layout = Layout.of(manifest["keys"], capacity_info.get("rate_key"))
    points = layout.with_series(points)
    doc = Document(f"servesim sweep report: {manifest.get('experiment')}")
    doc.paragraph(f"{len(results)} runs at {len(points)} points · seeds {manifest.get('seeds')} · "
                  f"servesim {manifest.get('servesim')} · varied: "
                  + (", ".join(f"`{k}`" for k in manifest["keys"]) or "nothing"))
    _capacity_section(doc, sweep_dir, capacity_info)
    doc.heading("Points (mean ± 95% CI over seeds)").table(*point_rows(points, layout, COMPARED))
    if len(points["series"].unique()) > 1:
        doc.heading("Comparison across configurations (relative to the first)")
        doc.table(*delta_rows(points, layout))
    doc.heading("Energy and cost (mean ± 95% CI)").table(*point_rows(points, layout, ENERGY_COST))
    _failures(doc, results)
    doc.heading("Figures")
    _cdf_figures(doc, sweep_dir, results, points, layout)
    _rate_figures(doc, sweep_dir, points, layout, capacity_info.get("target"))
    _timeseries_figures(doc, sweep_dir, results, points, layout)
    doc.heading("Definitions").raw(DEFINITIONS_MD)
    atomic.write_text(sweep_dir / "report.html", doc.to_html(sweep_dir))
    return atomic.write_text(sweep_dir / "report.md", doc.to_markdown())


def read_sweep(sweep_dir: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """``sweep.json``, ``results.csv`` and ``points.csv`` of a sweep folder (damaged ones refused)."""
    sweep_dir = Path(sweep_dir)
    manifest = read_sweep_manifest(sweep_dir / "sweep.json")
    layout = Layout.of(manifest["keys"], (manifest.get("capacity") or {}).get("rate_key"))
    results, points = read_sweep_tables(sweep_dir, manifest["keys"], layout.x_key)
    return manifest, results, points


def run_dir(sweep_dir: Path, run: str) -> Path:
    """The folder of a results row's ``run``: ``points/<key>`` or a path relative to the sweep."""
    cached = sweep_dir / "points" / str(run)
    return cached if cached.is_dir() else (sweep_dir / str(run))


def write_comparison(run_dirs: Sequence[Path], out_dir: Path, labels: Sequence[str] | None = None) -> Path:
    """Compare finished run folders (one point each) in ``out_dir``; returns its ``report.md``."""
    out_dir = check_sweep_dir(out_dir)  # a comparison folder is written like a sweep's: never into a run folder
    run_dirs = [Path(d).resolve() for d in run_dirs]
    labels = list(labels or _unique_labels(run_dirs))
    rows = []
    for index, (folder, label) in enumerate(zip(run_dirs, labels)):
        summary = read_summary(folder / "summary.json")
        rows.append({"point": index, "params": {"label": label}, "seed": summary.get("seed"), "run": str(folder),
                     "status": "ok", "error": "", "metrics": flatten_metrics(summary),
                     "wall_s": (summary.get("sim") or {}).get("wall_s")})
    results = results_frame(rows, ["label"])
    out_dir = Path(out_dir)
    atomic.write_csv(out_dir / "results.csv", results)
    atomic.write_csv(out_dir / "points.csv", points_frame(results, ["label"]))
    experiments = sorted({read_summary(d / "summary.json").get("experiment") or "?" for d in run_dirs})
    atomic.write_json(out_dir / "sweep.json", {"experiment": " vs ".join(experiments), "keys": ["label"],
                                               "seeds": sorted({r["seed"] for r in rows}), "servesim": __version__,
                                               "runs": len(rows), "failed": 0})
    return write_sweep_report(out_dir)


def _unique_labels(run_dirs: Sequence[Path]) -> list[str]:
    names = [d.name for d in run_dirs]
    return names if len(set(names)) == len(names) else [f"{d.parent.name}/{d.name}" for d in run_dirs]


# ---------------------------------------------------------------- sections
def _capacity_section(doc: Document, sweep_dir: Path, info: dict[str, Any]) -> None:
    path = sweep_dir / "capacity.csv"
    if not path.is_file():
        return
    table = read_table(path, "a capacity.csv (one row per configuration)", "not found", text=None)
    doc.heading(f"Capacity: highest rate with SLO attainment ≥ {info.get('target')}")
    doc.paragraph(f"Searched over `{info.get('rate_key')}` by bracketing and bisection; attainment is the mean "
                  "over seeds. *found*: bracketed; *above_range*/*below_range*: never missed/met the target.")
    header = [short_key(c) if "." in c else c for c in table.columns]
    doc.table(header, [[_cell(v) for v in row] for row in table.itertuples(index=False)])


def _failures(doc: Document, results: pd.DataFrame) -> None:
    failed = results[results["status"] != "ok"]
    if len(failed):
        doc.heading("Failed runs")
        doc.table(("point", "seed", "error"), [(str(r.point), str(r.seed), str(r.error)) for r in failed.itertuples()])


def _cdf_figures(doc, sweep_dir, results, points, layout) -> None:
    panels = _cdf_panels(points, layout)
    ok = results[results["status"] == "ok"]
    cache: dict[str, pd.DataFrame] = {}

    def completed(run: str) -> pd.DataFrame:
        if run not in cache:
            cache[run] = read_completed_requests(run_dir(sweep_dir, run) / "requests.csv")
        return cache[run]

    for column, name in LATENCIES:
        for title, filename, point_ids in panels:
            series = {}
            for label, ids in point_ids.items():
                runs = ok[ok["point"].isin(ids)]["run"]
                frames = [completed(r)[column] for r in runs]
                series[label] = np.concatenate([f.to_numpy() for f in frames]) if frames else np.array([])
            slo = _slo(ok, column)
            fig = figures.multi_cdf(series, name=name, slo_s=slo, title=f"{name} CDF{title}")
            path = f"cdf_{column.removesuffix('_s')}{filename}.png"
            figures.save_png(fig, sweep_dir / path)
            doc.figure(path, f"{name} CDF{title}, per configuration, pooled over seeds")


def _cdf_panels(points: pd.DataFrame, layout: Layout) -> list[tuple[str, str, dict[str, list[int]]]]:
    """(title suffix, file suffix, series -> point ids) for each CDF figure."""
    if layout.x_key is None:
        return [("", "", _ids_by_series(points))]
    xs = sorted(points[layout.x_key].dropna().unique())
    if len(xs) > MAX_CDF_PANELS:
        xs = [xs[i] for i in np.unique(np.linspace(0, len(xs) - 1, MAX_CDF_PANELS).round().astype(int))]
    name = short_key(layout.x_key)
    return [(f" at {name} = {x:g}", f"_{name}_{x:g}", _ids_by_series(points[points[layout.x_key] == x]))
            for x in xs]


def _ids_by_series(points: pd.DataFrame) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    for _, row in points.iterrows():
        ids.setdefault(row["series"], []).append(int(row["point"]))
    return ids


def _rate_figures(doc, sweep_dir, points, layout, target) -> None:
    if layout.x_key is None:
        return
    for column, label, filename in AGAINST_RATE:
        if column not in points.columns:
            continue
        series = {name: (g[layout.x_key].to_numpy(float), g[column].to_numpy(float),
                         g[column + CI_SUFFIX].to_numpy(float)) for name, g in points.groupby("series", sort=False)}
        fig = figures.metric_vs_x(series, xlabel=layout.x_key, ylabel=label, title=f"{label} against rate",
                                  target=target if column == "slo.attainment" else None)
        figures.save_png(fig, sweep_dir / filename)
        doc.figure(filename, f"{label} against rate, mean and 95% confidence band over seeds")


def _timeseries_figures(doc, sweep_dir, results, points, layout) -> None:
    ok = results[results["status"] == "ok"]
    for index, (label, group) in enumerate(list(points.groupby("series", sort=False))[:MAX_TIMESERIES]):
        top = group.sort_values(layout.x_key).iloc[-1] if layout.x_key else group.iloc[0]
        runs = ok[ok["point"] == top["point"]].sort_values("seed")
        if not len(runs):
            continue
        samples = read_timeseries(run_dir(sweep_dir, runs.iloc[0]["run"]) / "timeseries.csv")
        if samples is None:
            continue
        where = f"{short_key(layout.x_key)} = {top[layout.x_key]:g}, " if layout.x_key else ""
        title = f"{label} ({where}seed {runs.iloc[0]['seed']})"
        filename = f"timeseries_{index}.png"
        figures.save_png(figures.timeseries(samples, title=title), sweep_dir / filename)
        doc.figure(filename, f"per-instance KV use, waiting requests and running batch: {title}")


def _slo(results: pd.DataFrame, column: str) -> float | None:
    key = f"slo.{column}"
    if key in results.columns and len(results) and pd.notna(results[key].iloc[0]):
        return float(results[key].iloc[0])
    return None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4g}"
    return str(value)
