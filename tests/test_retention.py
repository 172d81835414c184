"""Workflow KV retention (simulator.engine.retention): pins, time-to-live, eviction, offload, reload.

One instance of Llama-3.1-8B with 400 KV blocks (6,400 tokens) serves one
agent workflow - a 2,000-token task, a 5-second tool, then 200 more tokens -
while other requests arrive during the tool call and compete for memory.

The workflow's first call leaves 128 indexed blocks and 272 never-used ones.
``FLOOD``: request A (1,800-token prompt with its own prefix hashes, 125
blocks) runs and finishes, leaving 112 cached blocks newer than the
workflow's; then B (2,800 tokens, 188 blocks) needs 28 more blocks than are
raw-free. Under LRU they come from the workflow's context; with the context
pinned they come from A's cached blocks. ``HUGE``: one 5,000-token request
(325 blocks) that does not fit beside the pinned context at all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import build_experiment, memory_utilization
from simulator.engine.kv_cache import KVCache
from simulator.engine.request import Request, RequestSpec
from simulator.engine.session import CallSpec, SessionSpec
from simulator.runner import Simulation

BLOCKS = 400
TASK = (CallSpec(2000, 50, kind="task"), CallSpec(200, 20, wait_before_s=5.0, kind="tool_result"))
FLOOD = ((1.0, 1800, 1000), (3.0, 2800, 5000))
HUGE = ((1.5, 5000, None),)
# The full blocks the second call carries: 2,050 tokens of context -> 128 blocks of 16.
CARRIED = 2050 // 16 * 16


def _experiment(tmp_path: Path, workflow: dict | None, eviction: dict | None = None, fast_forward: bool = True):
    policies = {} if workflow is None else {"workflow": workflow}
    if eviction is not None:
        policies["eviction"] = eviction
    return build_experiment(
        tmp_path, model="llama-3.1-8b",
        cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}],
                 "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", BLOCKS)},
        batching={"name": "vllm", "chunked_prefill": True, "max_batched_tokens": 2048},
        policies=policies, sim={"sample_interval_s": 0.25, "fast_forward": fast_forward})


def _run(experiment, flood):
    """The workflow plus the ``(arrival_s, prompt_tokens, first prefix hash or None)`` requests of ``flood``."""
    specs: list = [SessionSpec("agent", 0.0, TASK)]
    for arrival, prompt, first_hash in flood:
        hashes = () if first_hash is None else tuple(range(first_hash, first_hash + prompt // 16))
        specs.append(RequestSpec(arrival, prompt, 200, None, hashes, 16))
    simulation = Simulation(experiment)
    simulation.workload = specs
    result = simulation.run()
    calls = result.requests[result.requests["session_id"] == "agent"].sort_values("request_id")
    assert result.summary["requests"]["completed"] == len(TASK) + len(flood)
    return simulation, result, calls.iloc[1]


def test_a_retained_workflow_prefills_only_its_new_tokens(tmp_path: Path) -> None:
    simulation, result, second = _run(_experiment(tmp_path, {"name": "fixed_ttl", "ttl_s": 10}), FLOOD)
    assert second["prefix_hit_tokens"] == CARRIED
    assert second["prompt_tokens"] - second["prefix_hit_tokens"] <= 200 + 16
    assert result.summary["workflow_kv"]["pins"] == 2
    assert result.summary["workflow_kv"]["recomputed_context_tokens"] == 0
    assert simulation.cluster.instances[0].kv.used_blocks == 0, "the last pin is released with the session"


def test_without_retention_the_lru_cache_loses_the_context(tmp_path: Path) -> None:
    _, result, second = _run(_experiment(tmp_path, {"name": "prefix_cache"}), FLOOD)
    assert second["prefix_hit_tokens"] < CARRIED
    assert result.summary["workflow_kv"]["recomputed_context_tokens"] == CARRIED - second["prefix_hit_tokens"]


def test_an_expired_and_dropped_pin_pays_the_full_prefill(tmp_path: Path) -> None:
    workflow = {"name": "fixed_ttl", "ttl_s": 0.5, "expire_action": "drop"}
    _, result, second = _run(_experiment(tmp_path, workflow), FLOOD)
    assert second["prefix_hit_tokens"] == 0
    assert result.summary["workflow_kv"]["expiries"] == 1
    assert result.summary["workflow_kv"]["recomputed_context_tokens"] == CARRIED


def test_a_pin_evicted_under_memory_pressure_pays_the_full_prefill(tmp_path: Path) -> None:
    _, result, second = _run(_experiment(tmp_path, {"name": "fixed_ttl", "ttl_s": 10}, {"name": "lru"}), HUGE)
    assert second["prefix_hit_tokens"] == 0
    assert result.summary["workflow_kv"]["pressure_evictions"] == 1


def test_an_offloaded_context_is_reloaded_over_pcie_before_the_call(tmp_path: Path) -> None:
    workflow = {"name": "fixed_ttl", "ttl_s": 0.5, "expire_action": "offload"}
    simulation, result, second = _run(_experiment(tmp_path, workflow), HUGE)
    stats = result.summary["workflow_kv"]
    assert stats["offloads"] == 1 and stats["reloads"] == 1
    assert second["prefix_hit_tokens"] == CARRIED
    first = result.requests.sort_values("request_id").iloc[0]
    host = simulation.retention.hosts[0]
    reload_s = host.transfer_time_s(CARRIED * simulation.experiment.model.kv_bytes_per_token)
    # Released after the tool ran, then held back by the PCIe copy (and at most a step).
    released = first["finish_s"] + TASK[1].wait_before_s
    assert released + reload_s - 1e-9 <= second["arrival_s"] <= released + reload_s + 0.2
    assert host.used_bytes == 0


def test_prefix_cache_policy_changes_nothing(tmp_path: Path) -> None:
    """The mechanism is passive unless a policy retains: same requests as without it."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, plain, _ = _run(_experiment(tmp_path / "a", None), FLOOD)
    _, passive, _ = _run(_experiment(tmp_path / "b", {"name": "prefix_cache"}), FLOOD)
    pd.testing.assert_frame_equal(plain.requests, passive.requests)
    assert "workflow_kv" not in plain.summary


@pytest.mark.parametrize("workflow", [{"name": "fixed_ttl", "ttl_s": 0.5, "expire_action": "offload"},
                                      {"name": "fixed_ttl", "ttl_s": 10}])
def test_fast_forward_equals_stepping_with_retention(tmp_path: Path, workflow: dict) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, fast, _ = _run(_experiment(tmp_path / "a", workflow, fast_forward=True), FLOOD)
    _, slow, _ = _run(_experiment(tmp_path / "b", workflow, fast_forward=False), FLOOD)
    pd.testing.assert_frame_equal(fast.requests, slow.requests, rtol=1e-9)


def _request(request_id: int, prompt: int, hashes: tuple[int, ...]) -> Request:
    return Request(request_id, RequestSpec(0.0, prompt, 1, None, hashes, 16))


def test_pins_hold_blocks_out_of_the_lru_cache_and_check_counts_them() -> None:
    kv = KVCache(10, 16, 0)
    request = _request(0, 64, (1, 2, 3, 4))
    assert kv.grow(request, 64)
    request.computed_tokens = 64
    kv.publish(request)
    assert kv.pin("w", kv.shared_hashes(request)) == 4
    kv.free(request)
    kv.check()
    assert kv.free_blocks == 6 and kv.pin_only_blocks() == 4
    hog = _request(1, 96, ())
    assert kv.grow(hog, 96) and not kv.grow(hog, 112)  # pinned blocks are not evictable
    kv.free(hog)
    assert kv.unpin("w") == 4 and kv.free_blocks == 10 and len(kv.cached) == 4
    assert kv.pin("w", kv.shared_hashes(request) or (hash((1,)),)) == 0
    kv.check()
    # Drop frees at once; a reload allocates what the index lost and pins it.
    assert kv.load_pinned("v", [11, 12, 13]) and kv.used_blocks == 3
    kv.check()
    assert kv.unpin("v", drop=True) == 3 and kv.used_blocks == 0 and 11 not in kv.refcount
    kv.check()
    kv.pin_refs[99] = 1
    with pytest.raises(AssertionError):
        kv.check()
