"""SAGA's policies: learned execution graphs, protection of started workflows, fair share, affinity.

The mechanism's own tests are in test_retention.py; every workflow and
eviction policy also runs through test_saga_conformance.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build_experiment, experiment_dict, memory_utilization, write_experiment
from policies.saga.aeg import AgentGraph
from simulator.config import load_experiment
from simulator.engine.request import RequestSpec
from simulator.engine.session import CallSpec, SessionSpec
from simulator.runner import Simulation


def test_the_graph_learns_continuation_and_tool_latency() -> None:
    graph = AgentGraph(window=100)
    assert graph.p_continue(3, "tool_result") == pytest.approx(0.9)  # the prior, before any data
    for _ in range(40):  # tasks of exactly 5 calls
        for call in range(1, 5):
            graph.observe_call("task" if call == 1 else "tool_result", "tool_result", 0.1 * call, 300)
        graph.observe_end("tool_result", 5)
    assert graph.p_continue(2, "tool_result") > 0.9
    assert graph.p_continue(5, "tool_result") < 0.2  # every task seen ended at its fifth call
    assert graph.wait_quantile("tool_result", 0.99, 9.0) == pytest.approx(0.4)
    assert graph.wait_quantile("unseen", 0.5, 9.0) == 9.0
    # After 0.35 s of waiting only the 0.4 s samples remain: 0.05 s to go.
    assert graph.expected_remaining_wait_s("tool_result", 0.35, 9.0) == pytest.approx(0.05)
    assert graph.expected_remaining_wait_s("tool_result", 1.0, 9.0) > 1.0  # overdue: long
    assert graph.mean_appended("task", 0) == 300


def _one_instance(tmp_path: Path, blocks: int, policies: dict, **extra):
    return build_experiment(
        tmp_path, model="llama-3.1-8b",
        cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}],
                 "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", blocks)},
        policies=policies, sim={"sample_interval_s": 0.25}, **extra)


def _run(experiment, specs: list):
    simulation = Simulation(experiment)
    simulation.workload = specs
    return simulation.run()


@pytest.mark.parametrize("protect", [True, False])
def test_new_work_waits_instead_of_evicting_a_started_workflow(tmp_path: Path, protect: bool) -> None:
    """A 5,000-token request arriving while an agent's tool runs and a long decode holds memory.

    With protection it waits for the decode to end and the agent's next call
    reuses its whole context; without, it evicts the agent's pinned context.
    """
    # Whole-prompt prefill, so the request needs all its blocks to start; victims are dropped, not offloaded.
    policies = {"batching": {"name": "afs"}, "workflow": {"name": "saga", "default_wait_s": 10.0},
                "eviction": {"name": "saga", "protect_started": protect, "min_offload_tokens": 10**6}}
    task = (CallSpec(2000, 50, kind="task"), CallSpec(200, 20, wait_before_s=5.0, kind="tool_result"))
    specs = [SessionSpec("agent", 0.0, task), RequestSpec(0.9, 100, 1500), RequestSpec(1.0, 5000, 200)]
    result = _run(_one_instance(tmp_path, 400, policies), specs)
    rows = result.requests.set_index("request_id")
    assert result.summary["requests"]["completed"] == 4
    agent = rows[rows["session_id"] == "agent"].sort_index()
    huge = rows[rows["prompt_tokens"] == 5000].iloc[0]
    if protect:
        assert agent.iloc[1]["prefix_hit_tokens"] == 2048
        assert huge["first_scheduled_s"] > agent.iloc[1]["first_scheduled_s"]
    else:
        assert agent.iloc[1]["prefix_hit_tokens"] == 0
        assert huge["first_scheduled_s"] < agent.iloc[1]["arrival_s"]
    assert result.summary["workflow_kv"]["pressure_evictions"] == (0 if protect else 1)


def _tenant_share(tmp_path: Path, batching: dict) -> float:
    """Share of service tenant "small" gets while both tenants are backlogged (4x as many "noisy" calls)."""
    specs = [RequestSpec(0.0002 * i, 400, 100, tenant="small" if i % 5 == 0 else "noisy") for i in range(500)]
    result = _run(_one_instance(tmp_path, 600, {"batching": batching}), specs)
    rows = result.requests
    assert result.summary["requests"]["completed"] == 500
    # Both tenants have calls waiting until the small tenant's last one starts.
    until = rows.loc[rows["tenant"] == "small", "first_scheduled_s"].max()
    served = rows[rows["first_scheduled_s"] < until].groupby("tenant").size()
    return float(served["small"] / served.sum())


def test_agent_fair_share_keeps_each_tenant_within_the_bound(tmp_path: Path) -> None:
    """Equal weights: each tenant gets half of the service (bound: 0.5 +- 0.1) despite a 4x flood."""
    (tmp_path / "fair").mkdir()
    (tmp_path / "fcfs").mkdir()
    share = _tenant_share(tmp_path / "fair", {"name": "afs", "max_num_seqs": 16})
    assert abs(share - 0.5) <= 0.1
    # FCFS serves in arrival order: the small tenant gets its arrival share, 20%.
    unfair = _tenant_share(tmp_path / "fcfs", {"name": "vllm", "max_num_seqs": 16})
    assert abs(unfair - 0.2) <= 0.05


def test_fair_share_weights_divide_the_service(tmp_path: Path) -> None:
    share = _tenant_share(tmp_path, {"name": "afs", "max_num_seqs": 16, "weights": {"small": 3.0}})
    assert abs(share - 0.75) <= 0.1


def test_session_affinity_keeps_a_session_on_one_instance(tmp_path: Path) -> None:
    data = experiment_dict(instances=[{"count": 4, "gpu": "h100-sxm", "tp": 1}], router={"name": "session_affinity"})
    data["workload"] = {"sessions": {"kind": "agent", "profile": "browsing-agent",
                                     "arrivals": {"process": "poisson", "rate_per_s": 2.0}, "num_sessions": 12}}
    result = Simulation(load_experiment(write_experiment(tmp_path, data))).run()
    placed = result.requests.groupby("session_id")["instance_id"].nunique()
    assert (placed == 1).all()
    assert result.requests["instance_id"].nunique() > 1


@pytest.mark.parametrize("policies, message", [
    ({"workflow": {"name": "nope"}}, "unknown workflow policy 'nope'"),
    ({"workflow": {"name": "saga", "ttl_quantile": 2}}, "policies.workflow"),
    ({"workflow": {"name": "saga"}, "eviction": {"name": "lru", "victim_action": "keep"}}, "policies.eviction"),
])
def test_bad_workflow_policies_are_one_line_config_errors(tmp_path: Path, policies: dict, message: str) -> None:
    from simulator.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_experiment(tmp_path, policies=policies)


# ------------------------------------------------ found by review, kept as regressions
FAST = Path(__file__).resolve().parents[1] / "experiments" / "papers" / "saga" / "fast.yaml"
STRESS = ["cluster.gpu_memory_utilization=0.26", "workload.sources.0.duration_s=60",
          "workload.sources.1.duration_s=60", "workload.sources.2.duration_s=60",
          "workload.sources.0.sessions.arrivals.rate_per_s=0.4"]


def test_a_call_that_ends_away_from_its_workflows_pin_releases_it_there() -> None:
    # Llumnix migrates calls off the instance that pins their workflow's KV.
    simulation = Simulation(load_experiment(FAST, ["policies.controller={name: llumnix}",
                                                   "cluster.gpu_memory_utilization=0.26"]))
    result = simulation.run()
    assert result.summary["events"]["migrations"] > 0
    retention = simulation.retention
    assert not any(retention.pinned.values()), "a pin outlived its workflow"
    assert all(host.used_bytes == 0 for host in retention.hosts.values())
    for instance in simulation.cluster.instances:
        instance.kv.check()
        assert not instance.kv.pins


def test_fair_share_lifts_counters_before_the_head_is_chosen_so_fast_forward_equals_stepping() -> None:
    # Under this load, choosing the head before the lift made stepping evict a pin ~10 ms earlier.
    override = "policies.batching.whole_prompt=false"
    frames = [Simulation(load_experiment(FAST, [*STRESS, override, f"sim.fast_forward={ff}"])).run().requests
              for ff in ("true", "false")]
    fast, stepped = (f.sort_values("request_id").reset_index(drop=True) for f in frames)
    assert fast["status"].tolist() == stepped["status"].tolist()
    for column in ("arrival_s", "first_token_s", "finish_s"):
        assert fast[column].fillna(-1).to_numpy() == pytest.approx(stepped[column].fillna(-1).to_numpy(), rel=1e-9)
