"""Tests of the notebook API (``simulator.api``) and of ``servesim report`` on runs and comparisons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from experiment_files import write_small
from simulator import api
from simulator.cli import main
from simulator.errors import ServesimError

RATE = "workload.generator.arrivals.rate_per_s"


def test_load_set_and_run_give_dataframes_and_figures(tmp_path: Path) -> None:
    exp = api.load(write_small(tmp_path), {"workload.num_requests": 50})
    faster = exp.set({"cluster.instances.0.count": 2}, seed=3)
    assert exp.config["workload"]["num_requests"] == 50 and exp.config["seed"] == 0
    assert faster.config["cluster"]["instances"][0]["count"] == 2 and faster.config["seed"] == 3
    run = faster.run(out_dir=tmp_path / "run", report=True)
    assert run.metrics["requests.arrived"] == 50 and "ttft_s.p99" in run.metrics.index
    assert isinstance(run.requests, pd.DataFrame) and len(run.requests) == 50
    assert set(run.timeseries["instance_id"]) == {0, 1}
    assert isinstance(run.plot_cdf("tpot_s"), Figure) and isinstance(run.plot_timeseries(), Figure)
    assert (tmp_path / "run" / "report.html").is_file()
    reopened = api.open_run(tmp_path / "run")
    assert reopened.summary == run.summary


def test_bad_overrides_raise_the_one_line_error(tmp_path: Path) -> None:
    exp = api.load(write_small(tmp_path))
    with pytest.raises(ServesimError, match="rate_pers"):
        exp.set({"workload.generator.arrivals.rate_pers": 3})
    with pytest.raises(ServesimError, match="sweep key 'policies.router'"):
        exp.sweep(grid={"policies.router": [{"name": "nope"}]})


def test_sweep_tables_plots_and_reopening(tmp_path: Path) -> None:
    exp = api.load(write_small(tmp_path, name="tiny"), {"workload.num_requests": 40})
    sweep = exp.sweep(grid={RATE: [10, 30]}, zip=[{"policies.batching.max_num_seqs": [8, 64],
                                                    "policies.batching.max_batched_tokens": [1024, 4096]}],
                      seeds=[0, 1], out_dir=tmp_path / "sweep")
    assert len(sweep.results) == 8 and len(sweep.points) == 4 and not sweep.failures
    assert sweep.keys == [RATE, "policies.batching.max_num_seqs", "policies.batching.max_batched_tokens"]
    assert isinstance(sweep.plot("ttft_s.p99"), Figure)
    again = api.open_sweep(tmp_path / "sweep")
    pd.testing.assert_frame_equal(again.points, sweep.points, check_dtype=False)
    assert sweep.report_path().is_file()


def test_compare_and_report_of_several_runs(tmp_path: Path, capsys) -> None:
    exp = api.load(write_small(tmp_path), {"workload.num_requests": 40})
    a = exp.run(out_dir=tmp_path / "rr")
    b = exp.set({"policies.router": {"name": "jsq", "load": "tokens"}}).run(out_dir=tmp_path / "jsq")
    table = api.compare({"rr": a, "jsq": b})
    assert list(table.columns) == ["rr", "jsq", "jsq vs rr"]
    assert main(["report", str(tmp_path / "rr"), str(tmp_path / "jsq"), "-o", str(tmp_path / "cmp")]) == 0
    text = (tmp_path / "cmp" / "report.md").read_text()
    assert "| label=jsq | " in text or "label=jsq" in text
    assert "(base)" in text and (tmp_path / "cmp" / "cdf_ttft.png").is_file()
    assert main(["report", str(tmp_path / "rr")]) == 0  # a single run folder
    assert main(["report", str(tmp_path / "cmp")]) == 0  # a sweep-like folder
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "summary.json" in capsys.readouterr().err
