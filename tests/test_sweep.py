"""Tests of ``servesim sweep``: spec parsing, validation, caching, resumption, backends, tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiment_files import write_small
from simulator.cli import main
from simulator.errors import ConfigError
from simulator.sweep import run_sweep
from simulator.sweep_backends import make_backend
from simulator.sweep_plan import ExperimentSource, plan_runs
from simulator.sweep_spec import SweepSpec, parse_axis, spec_from_mapping, spec_from_options, value_label
from simulator.sweep_tables import mean_ci95

REPO = Path(__file__).resolve().parents[1]
RATE = "workload.generator.arrivals.rate_per_s"
ROUTERS = "policies.router=[{name: round_robin}, {name: jsq, load: tokens}]"


def numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """A results table without its wall-clock column, for exact comparison."""
    return frame.drop(columns=["wall_s"])


# ------------------------------------------------------------------ spec
def test_grid_zip_and_seeds_expand_to_every_combination() -> None:
    spec = spec_from_mapping({RATE: [10, 20, 40], "zip": [{"a.b": [1, 2], "a.c": ["x", "y"]}], "seed": [0, 1]})
    points = spec.points()
    assert len(points) == 6 and spec.seeds == [0, 1]
    assert points[0] == {RATE: 10, "a.b": 1, "a.c": "x"} and points[1] == {RATE: 10, "a.b": 2, "a.c": "y"}
    assert spec.keys == [RATE, "a.b", "a.c"]


def test_cli_axes_parse_yaml_values_and_replace_file_axes() -> None:
    assert parse_axis("x.y=1,2.5,abc", "--grid") == ("x.y", [1, 2.5, "abc"])
    key, values = parse_axis(ROUTERS, "--grid")
    assert values == [{"name": "round_robin"}, {"name": "jsq", "load": "tokens"}]
    spec = spec_from_options(SweepSpec(grid={RATE: [1, 2]}), [f"{RATE}=5", "seed=3,4"], ["a=1,2", "b=3,4"])
    assert spec.grid == {RATE: [5]} and spec.seeds == [3, 4] and spec.zips == [{"a": [1, 2], "b": [3, 4]}]
    assert value_label({"name": "jsq", "load": "tokens"}) == "jsq(load=tokens)"


@pytest.mark.parametrize("bad, message", [
    ({"zip": [{"a": [1, 2], "b": [1]}]}, "equally many"),
    ({RATE: 5}, "non-empty list"),
    ({"seed": [-1]}, "non-negative"),
])
def test_malformed_sweep_blocks_are_config_errors(bad, message) -> None:
    with pytest.raises(ConfigError, match=message):
        spec_from_mapping(bad)


@pytest.mark.parametrize("block", ["hello", "[1, 2]"])
def test_a_sweep_block_that_is_not_a_mapping_is_one_line_naming_the_file(tmp_path: Path, capsys, block) -> None:
    exp = write_small(tmp_path)
    out = tmp_path / "out"
    code = main(["sweep", str(exp), "-o", str(out), "--set", f"sweep={block}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{exp}: sweep: expected a mapping of dotted key paths to lists" in err
    assert not out.exists()


@pytest.mark.parametrize("block, message", [
    ("{seed: [a, b]}", "sweep.seed: seeds must be non-negative integers"),
    ("{seed: [0, 0]}", "sweep.seed: seeds repeat"),
    ("{zip: [{seed: [1]}]}", "sweep.zip.0: 'seed' cannot be zipped"),
])
def test_a_bad_axis_of_a_files_sweep_block_names_the_file_and_the_axis(tmp_path: Path, capsys, block,
                                                                       message) -> None:
    exp = write_small(tmp_path)
    code = main(["sweep", str(exp), "-o", str(tmp_path / "out"), "--set", f"sweep={block}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"{exp}: {message}" in err, err


def test_invalid_key_fails_before_any_run_naming_the_key(tmp_path: Path, capsys) -> None:
    exp = write_small(tmp_path)
    out = tmp_path / "out"
    code = main(["sweep", str(exp), "-o", str(out), "--grid", "workload.generator.arrivals.rate_pers=1,2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "sweep key 'workload.generator.arrivals.rate_pers'" in err
    assert not out.exists()
    code = main(["sweep", str(exp), "-o", str(out), "--grid", "policies.router=[{name: jsq, lod: 1}]"])
    assert code == 2 and "policies.router" in capsys.readouterr().err and not out.exists()


def test_run_keys_hash_the_resolved_config(tmp_path: Path) -> None:
    source = ExperimentSource.load(write_small(tmp_path))
    spec = spec_from_mapping({RATE: [10, 10.0, 20], "seed": [0, 1]})
    runs = plan_runs(source, spec, tmp_path)
    keys = [run.key for run in runs]
    assert keys[0] == keys[2] and keys[1] == keys[3]  # 10 and 10.0 are the same config
    assert len(set(keys)) == 4 and all(len(k) == 64 for k in keys)


# ------------------------------------------------------------ running
def test_sweep_writes_tables_and_is_identical_for_any_worker_count(tmp_path: Path, capsys) -> None:
    exp = write_small(tmp_path, sweep={RATE: [10, 40]})
    args = ["sweep", str(exp), "--grid", ROUTERS, "--grid", "seed=0,1,2", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "one"), "--workers", "1", "--no-report"]) == 0
    assert main([*args, "-o", str(tmp_path / "two"), "--workers", "2"]) == 0
    one = pd.read_csv(tmp_path / "one" / "results.csv")
    two = pd.read_csv(tmp_path / "two" / "results.csv")
    assert len(one) == 12 and (one["status"] == "ok").all()
    pd.testing.assert_frame_equal(numbers(one), numbers(two))
    points = pd.read_csv(tmp_path / "two" / "points.csv")
    assert len(points) == 4 and (points["n"] == 3).all()
    first = one[one["point"] == 0]["ttft_s.p99"].to_numpy()
    half = stats.t.ppf(0.975, 2) * first.std(ddof=1) / np.sqrt(3)
    assert points.loc[0, "ttft_s.p99"] == pytest.approx(first.mean())
    assert points.loc[0, "ttft_s.p99.ci95"] == pytest.approx(half)
    manifest = json.loads((tmp_path / "two" / "sweep.json").read_text())
    assert manifest["keys"] == [RATE, "policies.router"] and manifest["seeds"] == [0, 1, 2]
    for name in ("report.md", "report.html", "goodput_vs_rate.png", "attainment_vs_rate.png",
                 "cdf_ttft_rate_per_s_40.png", "timeseries_0.png"):
        assert (tmp_path / "two" / name).is_file(), name
    html = (tmp_path / "two" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 10 and "relative to the first" in html
    assert "12 run, 0 cached" in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "two"), "--workers", "2"]) == 0  # all cached now
    assert "0 run, 12 cached" in capsys.readouterr().out


def test_a_failing_point_is_reported_and_the_others_finish(tmp_path: Path, capsys) -> None:
    # 16-token prefill chunks sample no token in the first step, so a watchdog of one step
    # stops that run inside the worker, after validation passed.
    exp = write_small(tmp_path, policies={"batching": {"name": "sarathi", "max_batched_tokens": 16}})
    code = main(["sweep", str(exp), "-o", str(tmp_path / "out"), "--grid", "sim.watchdog_steps=100000,1",
                 "--workers", "1", "--quiet", "--no-report"])
    captured = capsys.readouterr()
    assert code == 1
    assert "run failed (sim.watchdog_steps=1, seed=0)" in captured.err and "no token generated" in captured.err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(results["status"]) == ["ok", "failed"]
    assert "1 failed" in captured.out


def test_killed_sweep_resumes_without_recomputing(tmp_path: Path) -> None:
    exp = write_small(tmp_path, sweep={RATE: [5, 10, 15, 20, 25, 30], "seed": [0, 1]})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "simulator.cli", "sweep", str(exp), "-o", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(out.glob("points/[!.]*/summary.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("points/*/summary.json")
                if not p.parent.name.startswith(".")}
    assert 3 <= len(done) < 12 and not (out / "results.csv").exists()
    finished = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert f"({12 - len(done)} run, {len(done)} cached, 0 failed)" in finished.stdout
    for key, mtime in done.items():  # finished runs were not recomputed
        assert (out / "points" / key / "summary.json").stat().st_mtime_ns == mtime
    assert len(pd.read_csv(out / "results.csv")) == 12
    assert not [p for p in (out / "points").iterdir() if p.name.startswith(".")]


def test_mean_ci95_matches_the_t_interval() -> None:
    values = np.array([1.0, 2.0, 4.0])
    mean, half = mean_ci95(values)
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean()) and half == pytest.approx((high - low) / 2)
    assert np.isnan(mean_ci95(np.array([3.0]))[1]) and np.isnan(mean_ci95(np.array([]))[0])


def test_ray_backend_gives_identical_numbers(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'servesim[ray]')")
    source = ExperimentSource.load(write_small(tmp_path))
    spec = spec_from_mapping({RATE: [10, 40], "policies.router": [{"name": "round_robin"},
                                                                  {"name": "jsq", "load": "tokens"}],
                              "seed": [0, 1, 2]})
    local = run_sweep(source, spec, tmp_path / "local", make_backend("local", 2), quiet=True, report=False)
    remote = run_sweep(source, spec, tmp_path / "ray", make_backend("ray", 2), quiet=True, report=False)
    assert remote.computed == 12 and not remote.failures
    pd.testing.assert_frame_equal(numbers(local.results), numbers(remote.results))
    for key in local.results["run"]:  # the driver wrote the same run folders
        a = json.loads((tmp_path / "local" / "points" / key / "summary.json").read_text())
        b = json.loads((tmp_path / "ray" / "points" / key / "summary.json").read_text())
        a["sim"].pop("wall_s"), b["sim"].pop("wall_s"), a["sim"].pop("requests_per_wall_s"), \
            b["sim"].pop("requests_per_wall_s")
        assert a == b
