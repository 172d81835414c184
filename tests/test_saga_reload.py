"""Reloads of offloaded workflow contexts: not wasted on a call that leaves, not given up while pins idle.

Found by a review of SAGA's useful-KV utilisation: a context was reloaded
onto its old home before the call was placed, and work stealing then sent
the call elsewhere (the reload held the call back and was never read); and
a reload that found no free memory waited out its patience and gave up -
the call then recomputed its whole context, taking the same memory from the
idle pins it could have taken at once.
"""

from __future__ import annotations

from pathlib import Path

from conftest import build_experiment, memory_utilization
from simulator.engine.request import RequestSpec
from simulator.engine.session import CallSpec, SessionSpec
from simulator.runner import Simulation

BLOCKS = 400
TASK = (CallSpec(2000, 50, kind="task"), CallSpec(200, 20, wait_before_s=2.5, kind="tool_result"))
CARRIED = 2050 // 16 * 16  # the full blocks of context the second call carries


def _experiment(tmp_path: Path, instances: int, workflow: dict, eviction: dict):
    return build_experiment(
        tmp_path, model="llama-3.1-8b",
        cluster={"node": "dgx-h100", "instances": [{"count": instances, "gpu": "h100-sxm", "tp": 1}],
                 "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", BLOCKS)},
        batching={"name": "vllm", "chunked_prefill": True, "max_batched_tokens": 2048},
        router={"name": "session_affinity"}, policies={"workflow": workflow, "eviction": eviction},
        sim={"sample_interval_s": 0.25})


def _run(experiment, specs: list):
    simulation = Simulation(experiment)
    simulation.workload = specs
    result = simulation.run()
    assert result.summary["requests"]["rejected"] == 0
    for instance in simulation.cluster.instances:
        instance.kv.check()
        assert not instance.kv.pins
    assert all(host.used_bytes == 0 for host in simulation.retention.hosts.values())
    calls = result.requests[result.requests["session_id"] == "agent"].sort_values("request_id")
    return result, calls.iloc[1]


def test_a_context_is_not_reloaded_onto_a_home_the_call_is_stolen_from(tmp_path: Path) -> None:
    """The agent's context is offloaded on instance 0; a long decode there makes its next call move to 1."""
    # Steal as soon as the home has more pending work than the other instance; pins expire in 0.3 s.
    workflow = {"name": "saga", "default_wait_s": 0.2, "min_offload_tokens": 0, "steal_factor": 0,
                "steal_min_tokens": 0}
    specs = [SessionSpec("agent", 0.0, TASK), RequestSpec(1.0, 100, 3000)]  # no session: least pending, 0
    result, second = _run(_experiment(tmp_path, 2, workflow, {"name": "saga"}), specs)
    stats = result.summary["workflow_kv"]
    assert stats["offloads"] == 1 and second["instance_id"] == 1 and second["prefix_hit_tokens"] == 0
    # Nothing was loaded onto the home the call left, nor its GPU copy pinned there again.
    assert stats["reloads"] == 0 and stats["gpu_hits_after_offload"] == 0 and stats["rehomed"] == 1
    assert stats["reloads_skipped"] == 1


def test_a_reload_evicts_an_idle_pin_rather_than_give_up_and_recompute(tmp_path: Path) -> None:
    """Memory at the agent's next call: a decode, and another workflow's idle pin; no room for the reload.

    The agent's context (128 blocks) is offloaded at 1.4 s and most of its GPU copy is then taken
    by a decoding request and by "other", whose finished call stays pinned until 3.3 s. The
    agent's call comes at 2.9 s: its reload now evicts the idle pin and loads the whole context.
    """
    workflow = {"name": "fixed_ttl", "ttl_s": 1.0, "expire_action": "offload"}
    specs = [SessionSpec("agent", 0.0, TASK), RequestSpec(1.5, 2500, 400, None, tuple(range(10**6, 10**6 + 156)), 16),
             SessionSpec("other", 2.0, (CallSpec(3000, 20), CallSpec(100, 10, wait_before_s=10.0)))]
    result, second = _run(_experiment(tmp_path, 1, workflow, {"name": "lru"}), specs)
    stats = result.summary["workflow_kv"]
    assert stats["offloads"] == 1 and stats["reload_failures"] == 0 and stats["reloads"] == 1
    assert second["prefix_hit_tokens"] == CARRIED
    assert stats["reload_evictions"] == 1 and stats["pressure_evictions"] == 1


SAGA_QUICK = {"name": "saga", "default_wait_s": 0.2, "min_offload_tokens": 0}  # pins expire in 0.3 s, offloaded
HUGE = RequestSpec(1.0, 5000, 500, None, tuple(range(10**6, 10**6 + 312)), 16)  # 344 of the 400 blocks at its end


def test_a_reload_waits_for_a_running_call_to_free_memory_rather_than_recompute(tmp_path: Path) -> None:
    """The agent's next call comes at 2.9 s, while a 5,000-token request decodes until ~6 s in its memory.

    Recomputing the context would need the same memory, so giving up after a while starts nothing sooner.
    """
    specs = [SessionSpec("agent", 0.0, TASK), HUGE]
    result, second = _run(_experiment(tmp_path, 1, SAGA_QUICK, {"name": "saga"}), specs)
    stats = result.summary["workflow_kv"]
    huge = result.requests[result.requests["prompt_tokens"] == 5000].iloc[0]
    assert stats["offloads"] == 1 and stats["reload_failures"] == 0 and stats["reloads"] == 1
    assert second["arrival_s"] > huge["finish_s"] > 2.9 + 2.0
    assert second["prefix_hit_tokens"] == CARRIED


def test_a_reload_waiting_for_memory_leaves_when_work_stealing_would_move_the_call(tmp_path: Path) -> None:
    """Instance 0 (home) decodes the huge request; instance 1 a short one, which ends while the reload waits.

    With one decode on each instance the call stays home; once instance 1 is idle it is stolen there.
    """
    workflow = {**SAGA_QUICK, "steal_factor": 0, "steal_min_tokens": 0}
    short = RequestSpec(1.1, 100, 300)  # to instance 1: fewer pending tokens than the huge prefill
    specs = [SessionSpec("agent", 0.0, TASK), HUGE, short]
    result, second = _run(_experiment(tmp_path, 2, workflow, {"name": "saga"}), specs)
    stats = result.summary["workflow_kv"]
    ended = result.requests[result.requests["prompt_tokens"] == 100].iloc[0]
    assert stats["offloads"] == 1 and stats["reload_failures"] == 0 and stats["reloads"] == 0
    assert stats["reloads_skipped"] == 1 and stats["rehomed"] == 1 and second["instance_id"] == 1
    assert ended["finish_s"] <= second["arrival_s"] <= ended["finish_s"] + 0.1
