"""Agent Fair Share's counters follow VTC (Sheng et al., OSDI 2024): lift on return from idle, charge once.

Found by a review: a tenant whose calls all waited was lifted to the running
tenants' lowest counter at every step, so the service it was owed melted
away while it waited; and a call re-admitted after a preemption was charged
its prompt a second time.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import build_experiment, memory_utilization
from policies.saga.fair_share import AgentFairShare
from simulator.engine.request import RequestSpec
from simulator.runner import Simulation


def _call(tenant: str) -> SimpleNamespace:
    return SimpleNamespace(tenant=tenant, session_id=None, num_preemptions=0)


def _state(waiting: list, running: list) -> SimpleNamespace:
    return SimpleNamespace(waiting=waiting, running=running, cached_prefix_tokens=lambda request: 0)


def test_a_backlogged_tenant_keeps_its_counter_and_a_returning_one_is_lifted() -> None:
    afs = AgentFairShare()
    afs._served.update({"busy": 900.0, "owed": 100.0, "back": 0.0})
    owed = _call("owed")
    state = _state([owed], [_call("busy")])
    for _ in range(3):  # steps while "owed" waits behind the running tenant
        assert afs.next_admission(state) is owed
    assert afs.counter("owed") == 100.0
    # "back" sends a call after a quiet spell: it starts at the lowest counter of those still waiting.
    state.waiting.append(_call("back"))
    afs.next_admission(state)
    assert afs.counter("back") == 100.0 and afs.counter("owed") == 100.0


def test_a_tenant_returning_to_an_empty_queue_starts_at_the_last_admitted_tenants_counter() -> None:
    afs = AgentFairShare()
    afs._served.update({"busy": 900.0})
    afs._admitted(_call("busy"), 50)  # "busy" was served last, leaving nothing waiting
    afs.next_admission(_state([_call("back")], []))
    assert afs.counter("back") == 950.0


def test_a_preempted_call_is_charged_its_prompt_once(tmp_path: Path) -> None:
    """Two 200-token prompts that each grow by 1,500 tokens on 120 blocks (1,920 tokens): one is preempted."""
    experiment = build_experiment(
        tmp_path, model="llama-3.1-8b",
        cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}],
                 "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", 120)},
        batching={"name": "afs", "chunked_prefill": True, "max_batched_tokens": 2048, "whole_prompt": False})
    simulation = Simulation(experiment)
    simulation.workload = [RequestSpec(0.01 * i, 200, 1500, tenant="t") for i in range(2)]
    result = simulation.run()
    assert result.summary["requests"]["completed"] == 2
    assert result.requests["num_preemptions"].sum() >= 1
    afs = simulation.cluster.instances[0].batch_policy
    # Prompts charged once (no prefix hits) plus twice the generated tokens.
    assert afs.counter("t") == pytest.approx(2 * 200 + 2 * 2 * 1500)
