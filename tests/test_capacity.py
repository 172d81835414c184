"""Tests of the capacity search: bracketing and bisection, and a real search on a small cluster."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiment_files import write_small
from simulator.capacity import CapacityOptions, CapacitySearch, run_capacity
from simulator.cli import main
from simulator.errors import ConfigError
from simulator.sweep_backends import make_backend
from simulator.sweep_plan import ExperimentSource
from simulator.sweep_spec import spec_from_mapping


def search(true_capacity: float, start: float, tolerance: float = 0.05) -> CapacitySearch:
    """Run a search against a step function: attainment 1 up to ``true_capacity``, then 0.5."""
    s = CapacitySearch(start, 0.9, tolerance)
    while (rate := s.next_rate()) is not None:
        s.observe(rate, 1.0 if rate <= true_capacity else 0.5)
    return s


@pytest.mark.parametrize("start", [1.0, 10.0, 37.0, 500.0])
def test_bracketing_and_bisection_find_the_step(start: float) -> None:
    s = search(37.0, start)
    assert s.status == "found"
    assert s.low <= 37.0 < s.high and (s.high - s.low) <= 0.05 * s.high
    assert len(s.observed) <= 14


def test_search_reports_when_the_target_is_out_of_range() -> None:
    assert search(1e9, 1.0).status == "above_range"
    assert search(1e-9, 1.0).status == "below_range"
    failed = CapacitySearch(1.0, 0.9, 0.05)
    failed.observe(failed.next_rate(), None)
    assert failed.status == "failed" and failed.next_rate() is None


def test_capacity_of_a_small_cluster_grows_with_instances(tmp_path: Path) -> None:
    # A tight TTFT SLO: with only 100 requests, a looser one would hold even when all arrive at once.
    source = ExperimentSource.load(write_small(tmp_path, slo={"ttft_s": 0.05, "tpot_s": 0.05}))
    spec = spec_from_mapping({"cluster.instances.0.count": [1, 2]})
    result = run_capacity(source, spec, tmp_path / "cap", make_backend("local", 1),
                          CapacityOptions(target=0.9, tolerance=0.1), quiet=True)
    table = result.table
    assert list(table["status"]) == ["found", "found"]
    assert (table["attainment_at_capacity"] >= 0.9).all() and (table["attainment_at_failing"] < 0.9).all()
    assert table.loc[1, "capacity"] > table.loc[0, "capacity"]
    saved = pd.read_csv(tmp_path / "cap" / "capacity.csv")
    assert list(saved["capacity"]) == list(table["capacity"])
    assert "Capacity" in (tmp_path / "cap" / "report.md").read_text()
    # Every evaluated run is in the sweep tables; a second search recomputes nothing.
    again = run_capacity(source, spec, tmp_path / "cap", make_backend("local", 1),
                         CapacityOptions(target=0.9, tolerance=0.1), quiet=True, report=False)
    assert list(again.table["capacity"]) == list(table["capacity"]) and again.runs == result.runs


def test_capacity_needs_an_slo_and_a_start_rate(tmp_path: Path, capsys) -> None:
    source = ExperimentSource.load(write_small(tmp_path, slo={}))
    with pytest.raises(ConfigError, match="needs an SLO"):
        run_capacity(source, spec_from_mapping({}), tmp_path / "x", make_backend("local", 1))
    code = main(["sweep", str(write_small(tmp_path)), "--capacity", "--rate-key", "workload.nothing",
                 "-o", str(tmp_path / "y")])
    assert code == 2 and "start rate at 'workload.nothing'" in capsys.readouterr().err
