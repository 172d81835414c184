"""Every registered workflow and eviction policy through one standard agent scenario.

Two instances with about 1,000 KV blocks each (16k tokens) serve SWE-agent and
browsing-agent tasks of two tenants, so retained contexts compete for memory,
expire, are evicted, offloaded and reloaded. Each policy must (with the
invariant checker on after every step): complete every workflow, leave no
block pinned, cached-only or in host DRAM after its sessions end, and give
identical results on a second run and with fast-forward off.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import experiment_dict, memory_utilization, write_experiment
from simulator.config import load_experiment
from simulator.registry import EVICTION_POLICIES, WORKFLOW_POLICIES
from simulator.runner import Simulation

BLOCKS = 1000


def _agents(profile: str, tenant: str, rate: float, count: int) -> dict:
    return {"sessions": {"kind": "agent", "profile": profile, "arrivals": {"process": "poisson", "rate_per_s": rate},
                         "num_sessions": count, "calls_per_task": {"dist": "uniform", "min": 2, "max": 8},
                         "first_prompt_tokens": {"dist": "uniform", "min_tokens": 200, "max_tokens": 2000},
                         "step_prompt_tokens": {"dist": "uniform", "min_tokens": 100, "max_tokens": 1500}},
            "labels": [{"set": {"tenant": tenant}}]}


def scenario(directory: Path, workflow: dict, eviction: dict, fast_forward: bool = True):
    data = experiment_dict(
        instances=[{"count": 2, "gpu": "h100-sxm", "tp": 1}], router={"name": "session_affinity"},
        batching={"name": "afs", "chunked_prefill": True, "max_batched_tokens": 2048})
    data["cluster"]["gpu_memory_utilization"] = memory_utilization("llama-3.1-8b", "h100-sxm", BLOCKS)
    data["workload"] = {"sources": [_agents("swe-agent", "coding", 0.5, 6), _agents("browsing-agent", "web", 1.0, 8)]}
    data["policies"].update(workflow=workflow, eviction=eviction)
    data["sim"] = {"sample_interval_s": 0.5, "fast_forward": fast_forward}
    directory.mkdir(parents=True, exist_ok=True)
    return load_experiment(write_experiment(directory, data))


def _check(simulation: Simulation, result) -> None:
    assert result.summary["workflows"]["completed"] == 14
    assert result.summary["requests"]["rejected"] == 0
    for instance in simulation.cluster.instances:
        instance.kv.check()
        assert not instance.kv.pins and instance.kv.used_blocks == 0
    assert all(host.used_bytes == 0 for host in simulation.retention.hosts.values())
    stats = result.summary["workflow_kv"]
    assert stats["calls"] == result.summary["requests"]["completed"]
    assert stats["recomputed_tokens"] >= 0 and 0 < stats["kv_useful_fraction"] <= 1


def _run(directory: Path, workflow: dict, eviction: dict, fast_forward: bool = True):
    simulation = Simulation(scenario(directory, workflow, eviction, fast_forward))
    result = simulation.run()
    _check(simulation, result)
    return result


@pytest.mark.parametrize("workflow", WORKFLOW_POLICIES.names())
def test_workflow_policy_conforms(tmp_path: Path, workflow: str) -> None:
    params = {"name": workflow}
    if workflow == "fixed_ttl":
        params.update(ttl_s=1.0, expire_action="offload")
    first = _run(tmp_path / "a", params, {"name": "lru", "victim_action": "offload"})
    again = _run(tmp_path / "b", params, {"name": "lru", "victim_action": "offload"})
    pd.testing.assert_frame_equal(first.requests, again.requests)


@pytest.mark.parametrize("eviction", EVICTION_POLICIES.names())
def test_eviction_policy_conforms_and_fast_forward_equals_stepping(tmp_path: Path, eviction: str) -> None:
    workflow = {"name": "saga"}
    fast = _run(tmp_path / "a", workflow, {"name": eviction})
    slow = _run(tmp_path / "b", workflow, {"name": eviction}, fast_forward=False)
    pd.testing.assert_frame_equal(fast.requests, slow.requests, rtol=1e-9)
    assert fast.summary["workflow_kv"]["pins"] > 0


def test_the_scenario_puts_retained_kv_under_pressure(tmp_path: Path) -> None:
    stats = _run(tmp_path, {"name": "saga"}, {"name": "saga"}).summary["workflow_kv"]
    assert stats["pressure_evictions"] > 0 and stats["offloads"] > 0 and stats["reused_context_tokens"] > 0
