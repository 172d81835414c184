"""Tests of the per-instance time series sampled during a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiment_files import write_small
from simulator.config import load_experiment
from simulator.metrics.sampler import TIMESERIES_COLUMNS
from simulator.runner import run_experiment, write_outputs


def _run(path: Path, *overrides: str):
    return run_experiment(load_experiment(path, list(overrides)))


def test_sampling_does_not_change_results_and_has_one_row_per_instance_per_tick(tmp_path: Path) -> None:
    exp = write_small(tmp_path, cluster={"node": "dgx-h100", "instances": [{"count": 2, "gpu": "h100-sxm"}]})
    sampled = _run(exp, "sim.sample_interval_s=0.25")
    plain = _run(exp, "sim.sample_interval_s=null")
    for result in (sampled, plain):
        result.summary["sim"].pop("wall_s"), result.summary["sim"].pop("requests_per_wall_s")
    assert sampled.summary == plain.summary and plain.timeseries is None
    frame = sampled.timeseries
    assert tuple(frame.columns) == TIMESERIES_COLUMNS
    ticks = np.unique(frame["time_s"])
    assert np.allclose(ticks, 0.25 * np.arange(len(ticks)))
    assert len(frame) == 2 * len(ticks) and ticks[-1] <= sampled.summary["sim"]["simulated_s"]
    assert ((frame["kv_used_blocks"] >= 0) & (frame["kv_used_blocks"] <= frame["kv_total_blocks"])).all()
    assert frame["num_running"].max() > 0
    out = write_outputs(sampled, tmp_path / "run")
    assert (out / "timeseries.csv").is_file() and (out / "timeseries.png").is_file()
    assert "timeseries.png" in (out / "report.md").read_text()
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_a_long_run_thins_its_samples_to_the_limit_at_a_doubled_interval(tmp_path: Path) -> None:
    exp = write_small(tmp_path, cluster={"node": "dgx-h100", "instances": [{"count": 2, "gpu": "h100-sxm"}]})
    full = _run(exp, "sim.sample_interval_s=0.05").timeseries
    thinned = _run(exp, "sim.sample_interval_s=0.05", "sim.max_samples=8").timeseries
    ticks = np.unique(thinned["time_s"])
    assert len(np.unique(full["time_s"])) > 16, "the run must be long enough to thin twice"
    assert 4 <= len(ticks) <= 8
    interval = ticks[1] - ticks[0]
    assert interval > 0.05 and np.log2(interval / 0.05) == round(np.log2(interval / 0.05))
    assert np.allclose(ticks, interval * np.arange(len(ticks)))
    # Thinning keeps rows; it does not re-sample: every kept row is one of the full run's.
    merged = thinned.merge(full, on=["time_s", "instance_id"], suffixes=("", "_full"))
    assert len(merged) == len(thinned)
    assert (merged["kv_used_blocks"] == merged["kv_used_blocks_full"]).all()
