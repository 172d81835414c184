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


@pytest.mark.parametrize("call, message", [
    (lambda exp: api.load(None), "load(path): expected the path of an experiment file"),
    (lambda exp: api.load(exp.source.path, ["a=1"]), "load(overrides): expected a mapping"),
    (lambda exp: exp.set({"policies.router": object()}), "set key 'policies.router': a value of type object"),
    (lambda exp: exp.sweep(grid={RATE: "48"}), f"sweep(grid=...): '{RATE}': expected a list of values, got str"),
    (lambda exp: exp.sweep(grid={"seed": 5}), "sweep(grid=...): 'seed': expected a list of values, got int"),
    (lambda exp: exp.sweep(grid=[1, 2]), "sweep(grid=...): expected a mapping of dotted keys to lists"),
    (lambda exp: exp.sweep(zip=[5]), "sweep(zip[0]): expected a mapping"),
    (lambda exp: exp.sweep(seeds=[-1]), "sweep(seeds=...): seeds must be non-negative integers"),
    (lambda exp: exp.sweep(workers=0), "workers=0: expected a positive number of workers"),
    (lambda exp: exp.sweep(backend="nope"), "sweep(backend='nope'): expected one of local, ray"),
    (lambda exp: exp.capacity(grid={RATE: "48"}), f"capacity(grid=...): '{RATE}': expected a list of values"),
    (lambda exp: api.compare({}), "compare(runs): expected a non-empty mapping"),
], ids=["load-None", "load-list", "set-object", "grid-string", "grid-int", "grid-list", "zip-int",
        "seeds-negative", "workers-0", "backend", "capacity-grid-string", "compare-empty"])
def test_bad_api_arguments_raise_servesim_errors_naming_the_argument(tmp_path: Path, call, message) -> None:
    exp = api.load(write_small(tmp_path))
    with pytest.raises(ServesimError) as caught:
        call(exp)
    assert message in str(caught.value)
    assert "--" not in str(caught.value)  # names the API's argument, not a command-line flag


def test_plot_cdf_of_an_unknown_metric_is_a_servesim_error(tmp_path: Path) -> None:
    run = api.load(write_small(tmp_path), {"workload.num_requests": 20}).run()
    with pytest.raises(ServesimError, match=r"plot_cdf\('nope'\): expected one of ttft_s, tpot_s"):
        run.plot_cdf("nope")


def test_a_failed_sweep_or_capacity_search_leaves_no_temporary_folder(tmp_path: Path, monkeypatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    exp = api.load(write_small(tmp_path), {"workload.num_requests": 20})
    with pytest.raises(ServesimError, match="sweep key 'foo.bar'"):
        exp.sweep(grid={"foo.bar": [1, 2]})
    with pytest.raises(ServesimError, match="capacity target"):
        exp.capacity(target=5)
    assert list(scratch.iterdir()) == []
