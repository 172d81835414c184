"""``servesim sweep``: run every point and seed of a sweep, cached, in parallel, resumable.

Each run is cached as a normal run folder ``points/<key>/`` (``key`` is the
hash of its resolved configuration and the servesim version), written
atomically by ``write_outputs``. A folder with a ``summary.json`` is finished:
re-running a sweep, or resuming a killed one, skips it. A failing run is
reported on one line and recorded as ``failed``; the others go on. At the end
the sweep writes ``results.csv`` and ``points.csv`` (see ``sweep_tables``),
``sweep.json`` (what was varied) and the report (``report.md``, ``report.html``
and figures).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from simulator import __version__, atomic
from simulator.errors import ConfigError
from simulator.sweep_plan import POINTS_DIR, ExperimentSource, PlannedRun, plan_runs
from simulator.sweep_run import RunOutcome
from simulator.sweep_spec import SweepSpec, value_label
from simulator.sweep_tables import flatten_metrics, points_frame, results_frame

MANIFEST = "sweep.json"
RESULTS_CSV = "results.csv"
POINTS_CSV = "points.csv"


@dataclass
class SweepResult:
    """The tables of a finished sweep and what happened to its runs."""

    out_dir: Path
    results: pd.DataFrame
    points: pd.DataFrame
    keys: list[str]
    computed: int = 0
    cached: int = 0
    failures: list[str] = field(default_factory=list)


def default_out_dir(source: ExperimentSource) -> Path:
    return Path("runs") / f"{source.name}-sweep"


def check_sweep_dir(out_dir: Path) -> Path:
    """``out_dir`` made absolute; a ``ConfigError`` unless it is absent, empty or a sweep's folder.

    A sweep resumes in its own folder (finished ``points/`` are kept) and rewrites its tables
    there, so only an earlier sweep's or comparison's folder (``sweep.json``, or ``points/``
    left by a killed sweep) may be reused: never a run folder or a folder the user keeps
    other files in.
    """
    out_dir = atomic.check_destination(out_dir)
    if not out_dir.exists():
        return out_dir
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a folder; choose another output folder")
    if any(out_dir.iterdir()) and not ((out_dir / MANIFEST).is_file() or (out_dir / POINTS_DIR).is_dir()):
        raise ConfigError(f"{out_dir}: exists and is not a sweep folder (no {MANIFEST} or {POINTS_DIR}/); "
                          "refusing to write into it, choose another output folder")
    return out_dir


def run_sweep(source: ExperimentSource, spec: SweepSpec, out_dir: Path, backend, *, quiet: bool = False,
              run_reports: bool = False, report: bool = True) -> SweepResult:
    """Plan (validating everything first), run what is not cached, and write tables and report."""
    out_dir = check_sweep_dir(out_dir)
    runs = plan_runs(source, spec, out_dir, with_report=run_reports)
    progress = Progress(len({run.key for run in runs}), quiet)
    try:
        statuses = execute_runs(runs, backend, out_dir, progress)
    finally:
        progress.close()
    result = write_tables(out_dir, source, spec.keys, runs, statuses)
    result.computed, result.cached = progress.computed, progress.cached
    if report:
        from simulator.report.sweep_report import write_sweep_report

        write_sweep_report(out_dir)
    return result


class Progress:
    """A tqdm bar over runs (ETA included) with a failure count; silent when quiet or not a TTY."""

    def __init__(self, total: int | None, quiet: bool, desc: str = "sweep") -> None:
        self.quiet = quiet
        self.bar = tqdm(total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True,
                        disable=quiet or not sys.stderr.isatty())
        self.computed = self.cached = self.failed = 0

    def skip(self, count: int) -> None:
        self.cached += count
        self.bar.update(count)

    def done(self, outcome: RunOutcome, label: str) -> None:
        self.computed += 1
        if not outcome.ok:
            self.failed += 1
            self.bar.set_postfix(failed=self.failed)
            tqdm.write(f"servesim: run failed ({label}): {outcome.error}", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def execute_runs(runs: Sequence[PlannedRun], backend, out_dir: Path,
                 progress: Progress) -> dict[str, RunOutcome | None]:
    """Run every distinct task not already cached; map each key to its outcome (None: cached)."""
    points = Path(out_dir) / POINTS_DIR
    clean_staging(points)
    atomic.remove_temporaries(Path(out_dir))  # tables a killed sweep was writing
    tasks, labels = {}, {}
    for run in runs:
        tasks.setdefault(run.key, run.task)
        labels.setdefault(run.key, run_label(run))
    cached = {key for key in tasks if is_cached(points / key)}
    statuses: dict[str, RunOutcome | None] = dict.fromkeys(cached)
    progress.skip(len(cached))

    def on_done(outcome: RunOutcome) -> None:
        statuses[outcome.key] = outcome
        progress.done(outcome, labels[outcome.key])

    backend.run([task for key, task in tasks.items() if key not in cached], on_done)
    return statuses


def is_cached(run_dir: Path) -> bool:
    """A run folder is finished once its summary is there (folders appear atomically)."""
    return (run_dir / "summary.json").is_file()


def clean_staging(points: Path) -> None:
    """Remove half-written run folders a killed sweep left behind (hidden staging names)."""
    if not points.is_dir():
        return
    for leftover in points.glob(".*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def run_label(run: PlannedRun) -> str:
    params = ", ".join(f"{key}={value_label(value)}" for key, value in run.params.items())
    return f"{params + ', ' if params else ''}seed={run.seed}"


def write_tables(out_dir: Path, source: ExperimentSource, keys: list[str], runs: Sequence[PlannedRun],
                 statuses: dict[str, RunOutcome | None], extra: dict[str, Any] | None = None) -> SweepResult:
    """Assemble and write ``results.csv``, ``points.csv`` and ``sweep.json`` (``extra`` joins the latter)."""
    rows = [run_row(out_dir, run, statuses.get(run.key, _MISSING)) for run in runs]
    results = results_frame(rows, keys)
    points = points_frame(results, keys)
    manifest = {"experiment": source.name, "path": str(source.path), "keys": keys,
                "seeds": sorted({run.seed for run in runs}), "servesim": __version__,
                "runs": len(runs), "failed": int((results["status"] != "ok").sum()) if len(results) else 0,
                **(extra or {})}
    atomic.write_csv(out_dir / RESULTS_CSV, results)
    atomic.write_csv(out_dir / POINTS_CSV, points)
    atomic.write_json(out_dir / MANIFEST, manifest)
    failures = [f"{run_label(run)}: {row['error']}" for run, row in zip(runs, rows) if row["status"] != "ok"]
    return SweepResult(out_dir, results, points, keys, failures=failures)


_MISSING = RunOutcome("", "not run (the sweep was interrupted)", 0.0)


def run_row(out_dir: Path, run: PlannedRun, outcome: RunOutcome | None) -> dict[str, Any]:
    """The results row of one run: its metrics from the cached folder, or its error."""
    row: dict[str, Any] = {"point": run.point, "params": run.params, "seed": run.seed, "run": run.key}
    if outcome is not None and not outcome.ok:
        return {**row, "status": "failed", "error": outcome.error, "metrics": None, "wall_s": outcome.wall_s}
    summary = json.loads((Path(out_dir) / POINTS_DIR / run.key / "summary.json").read_text())
    wall = (summary.get("sim") or {}).get("wall_s")
    return {**row, "status": "ok", "error": "", "metrics": flatten_metrics(summary), "wall_s": wall}
