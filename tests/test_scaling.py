"""Auto-scaling mechanism (simulator.engine.scaling): states, start-up delay, drains, instance-hours."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build_experiment, trace_workload
from simulator.errors import SimulationError
from simulator.runner import Simulation


def three_instances(directory: Path, rows: list[tuple[float, int, int]]):
    return build_experiment(
        directory, model="llama-2-7b",
        cluster={"node": "alibaba-gn7i-a10", "instances": [{"count": 3, "gpu": "a10", "tp": 1}]},
        workload=trace_workload(directory, rows), router={"name": "round_robin"},
        policies={"controller": {"name": "llumnix", "migration": False}},
        sim={"sample_interval_s": None})


def at(simulation: Simulation, time_s: float, action) -> None:
    def process():
        yield simulation.env.timeout(time_s)
        action()
    simulation.env.process(process())


def test_only_active_instances_receive_requests_and_a_start_takes_its_delay(tmp_path: Path) -> None:
    rows = [(0.5 * k, 100, 20) for k in range(12)]
    simulation = Simulation(three_instances(tmp_path, rows))
    actions = simulation.actions
    actions.drain_instance(2)  # empty at time 0: released at once
    assert actions.instance_state(2) == "inactive"
    at(simulation, 1.1, lambda: actions.start_instance(2, 2.0))  # routable from 3.1 s
    result = simulation.run()
    placed = result.requests.set_index("arrival_s")["instance_id"]
    assert set(placed[placed.index < 3.1]) == {0, 1}
    assert 2 in set(placed[placed.index > 3.1])
    # Instance 2 was provisioned from 1.1 s to the end, the others the whole run.
    end = result.summary["sim"]["simulated_s"]
    assert result.summary["scaling"]["instance_hours"] == pytest.approx((2 * end + end - 1.1) / 3600)
    assert simulation.instance_stats[2].active_s == pytest.approx(end - 1.1)
    assert simulation.instance_stats[0].active_s == pytest.approx(end)


def test_a_drained_instance_finishes_its_requests_then_costs_nothing(tmp_path: Path) -> None:
    rows = [(0.0, 500, 200), (0.0, 100, 10), (0.0, 100, 10)] + [(2.0 + 0.2 * k, 100, 10) for k in range(9)]
    rows.append((20.0, 100, 10))  # after request 0 has ended
    (tmp_path / "static").mkdir()
    static = Simulation(three_instances(tmp_path / "static", rows)).run()
    simulation = Simulation(three_instances(tmp_path, rows))
    released: list = []

    def drain():
        released.append(simulation.actions.drain_instance(0))

    at(simulation, 1.0, drain)
    result = simulation.run()
    requests = result.requests
    # Request 0 was running on instance 0: it finishes there; later arrivals avoid instance 0.
    assert requests.iloc[0]["instance_id"] == 0 and requests.iloc[0]["status"] == "finished"
    assert (requests.iloc[3:]["instance_id"] != 0).all()
    (event,) = released
    assert event.triggered and simulation.actions.instance_state(0) == "inactive"
    drained_at = requests.iloc[0]["finish_s"]
    assert simulation.instance_stats[0].active_s == pytest.approx(drained_at, abs=0.06)  # polled every 50 ms
    assert result.summary["cost"]["usd"] < static.summary["cost"]["usd"]
    assert result.summary["energy"]["joules"] < static.summary["energy"]["joules"]


def test_invalid_transitions_and_an_empty_pool_are_reported(tmp_path: Path) -> None:
    rows = [(1.0, 100, 10)]
    simulation = Simulation(three_instances(tmp_path, rows))
    actions = simulation.actions
    with pytest.raises(SimulationError, match="not inactive"):
        actions.start_instance(0, 1.0)
    for instance in range(3):
        actions.drain_instance(instance)
    with pytest.raises(SimulationError, match="not active"):
        actions.drain_instance(0)
    result = simulation.run()
    row = result.requests.iloc[0]
    assert row["status"] == "rejected" and "no active instance" in row["reject_reason"]


def test_static_runs_keep_the_whole_run_cost(tmp_path: Path) -> None:
    """Without scaling nothing changes: no provisioned time is recorded, cost covers the whole run."""
    simulation = Simulation(three_instances(tmp_path, [(0.0, 100, 10)]))
    result = simulation.run()
    assert all(stats.active_s is None for stats in simulation.instance_stats)
    end = result.summary["sim"]["simulated_s"]
    assert result.summary["scaling"]["instance_hours"] == pytest.approx(3 * end / 3600)
    assert result.summary["cost"]["usd"] == pytest.approx(3 * 0.75 * end / 3600)


def test_a_retired_instance_loses_its_prefix_cache(tmp_path: Path) -> None:
    simulation = Simulation(three_instances(tmp_path, [(0.0, 100, 10)]))
    kv = simulation.cluster.instances[2].kv
    kv.load_pinned("earlier", (11, 12, 13))
    kv.unpin("earlier")  # the blocks stay indexed, evictable: what a finished request leaves behind
    assert kv.indexed_prefix((11, 12, 13)) == 3
    simulation.actions.drain_instance(2)  # empty: switched off at once
    assert kv.indexed_prefix((11, 12, 13)) == 0 and kv.free_blocks == kv.total_blocks
    kv.check()


def test_a_drained_instance_is_released_only_once_retained_kv_is_gone(tmp_path: Path) -> None:
    simulation = Simulation(three_instances(tmp_path, [(0.0, 100, 10), (5.0, 100, 10)]))  # runs past 3.2 s
    actions, kv = simulation.actions, simulation.cluster.instances[2].kv
    kv.load_pinned("workflow", (21, 22))  # KV a workflow keeps between calls
    at(simulation, 0.5, lambda: actions.drain_instance(2))
    at(simulation, 3.0, lambda: kv.unpin("workflow"))
    released = []
    at(simulation, 2.9, lambda: released.append(actions.instance_state(2)))
    at(simulation, 3.2, lambda: released.append(actions.instance_state(2)))
    simulation.run()
    assert released == ["draining", "inactive"]
    assert kv.free_blocks == kv.total_blocks and kv.indexed_prefix((21, 22)) == 0


def test_utilisation_is_over_provisioned_time_and_a_drain_at_time_zero_is_no_scale_down(tmp_path: Path) -> None:
    rows = [(0.1 * k, 200, 20) for k in range(6)]
    simulation = Simulation(three_instances(tmp_path, rows))
    simulation.actions.drain_instance(2)  # the starting pool is instances 0 and 1
    at(simulation, 0.3, lambda: simulation.actions.drain_instance(1))
    result = simulation.run()
    end = result.summary["sim"]["simulated_s"]
    stats = simulation.instance_stats
    provisioned = sum(s.active_s for s in stats)
    assert stats[2].active_s == 0 and stats[0].active_s == pytest.approx(end)
    assert result.summary["utilization"]["gpu_busy"] == pytest.approx(sum(s.busy_s for s in stats) / provisioned)
    assert result.summary["utilization"]["kv_mean"] == pytest.approx(
        sum(s.kv_usage_integral for s in stats) / provisioned)
    assert result.summary["scaling"]["scale_downs"] == 1  # instance 1 at 0.3 s; instance 2 at 0 set the pool
