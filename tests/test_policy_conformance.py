"""Every registered policy, run through the same standard scenarios (DESIGN.md section 4).

For each registered router, batching policy and admission policy (with
default parameters, the others fixed to baselines) the standard scenario - two
instances, ~40 requests with some long prompts, KV memory tight enough that
requests are preempted - must:

* respect the step limits on every step: tokens <= max_batched_tokens,
  sequences <= max_num_seqs, each request at most once with >= 1 token;
* never use more KV blocks than the instance has;
* make progress: every request completes (no horizon, nothing rejected);
* be deterministic for a seed: two runs give identical request tables.

New policies registered through entry points are picked up automatically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import CommittedSteps, build_experiment, commit_hooks, memory_utilization, trace_workload, uniform
from simulator.engine.instance import Instance
from simulator.registry import ADMISSION_POLICIES, BATCH_POLICIES, ROUTERS
from simulator.runner import Simulation

KV_BLOCKS = 400  # 6400 tokens per instance: the longest request (3200 tokens) fits, two of them may not
BASELINE = {"router": {"name": "round_robin"}, "batching": {"name": "vllm"}, "admission": {"name": "aggressive"}}


def shipped(registry) -> list[str]:
    """Registered names, less the deliberately broken policies other test modules register."""
    def from_tests(cls) -> bool:
        module = cls.__module__
        return module.startswith(("test_", "tests.", "conftest")) or module == "__main__"
    return [name for name in registry.names() if not from_tests(registry.get(name))]


def scenario(directory: Path, *, preemption: str = "recompute", **policies: dict[str, Any]):
    """Two H100 instances of Llama-3.1-8B with ~KV_BLOCKS KV blocks each; 40 requests, some with long prompts."""
    chosen = {**BASELINE, **policies}
    return build_experiment(
        directory, name="conformance.yaml", seed=7, model="llama-3.1-8b",
        cluster={"node": "dgx-h100", "instances": [{"count": 2, "gpu": "h100-sxm", "tp": 1}],
                 "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", KV_BLOCKS),
                 "preemption": preemption},
        workload={"generator": {"arrivals": {"process": "poisson", "rate_per_s": 40.0},
                                "lengths": {"prompt": uniform(16, 3000), "output": uniform(1, 200)}},
                  "num_requests": 40},
        router=chosen["router"], batching=chosen["batching"], admission=chosen["admission"],
        sim={"sample_interval_s": None})


class StepAudit:
    """Checks every committed step against its instance's limits and KV capacity."""

    def __init__(self) -> None:
        self.steps = 0
        self.max_tokens = 0
        self.max_seqs = 0

    def before(self, instance: Instance, record: CommittedSteps) -> None:
        plan, limits = record.plan, instance.setup.limits
        entries = plan.entries
        assert plan.shape.num_tokens <= limits.max_batched_tokens, (
            f"instance {instance.id}: step of {plan.shape.num_tokens} tokens over the budget "
            f"{limits.max_batched_tokens}")
        assert len(entries) <= limits.max_num_seqs, (
            f"instance {instance.id}: {len(entries)} sequences over the cap {limits.max_num_seqs}")
        assert plan.shape.num_seqs == len(entries)
        assert plan.shape.num_tokens == sum(tokens for _, tokens in entries)
        assert all(tokens >= 1 for _, tokens in entries)
        assert len({request.id for request, _ in entries}) == len(entries), "a request twice in one step"
        if record.steps > 1:
            assert all(tokens == 1 for _, tokens in entries), "a fast-forward run only decodes"
        self.steps += record.steps
        self.max_tokens = max(self.max_tokens, int(plan.shape.num_tokens))
        self.max_seqs = max(self.max_seqs, len(entries))
        assert 0 <= instance.kv.used_blocks <= instance.kv.total_blocks

    def after(self, instance: Instance, record: CommittedSteps) -> None:
        kv = instance.kv
        kv.check()
        assert 0 <= kv.used_blocks <= kv.total_blocks, (
            f"instance {instance.id}: {kv.used_blocks} KV blocks used of {kv.total_blocks}")


def run_audited(experiment) -> tuple[Simulation, Any, StepAudit]:
    audit = StepAudit()
    with commit_hooks(audit.before, audit.after):
        simulation = Simulation(experiment)
        result = simulation.run()
    return simulation, result, audit


def check_conformance(directory: Path, **scenario_args: Any) -> None:
    (directory / "first").mkdir()
    (directory / "second").mkdir()
    simulation, result, audit = run_audited(scenario(directory / "first", **scenario_args))

    # Progress: everything completes, nothing is lost.
    counts = result.summary["requests"]
    assert counts["arrived"] == 40
    assert counts["completed"] == 40, result.requests.loc[result.requests["status"] != "finished",
                                                          ["request_id", "status", "reject_reason"]]
    done = result.requests
    assert (done["generated_tokens"] == done["output_tokens"]).all()
    assert audit.steps == result.summary["sim"]["steps"] > 0
    for instance in simulation.cluster.instances:
        assert instance.kv.used_blocks == 0, "every block is released at the end"
        assert not instance.queues.has_work()

    # Determinism: the same seed gives the same table.
    _, again, _ = run_audited(scenario(directory / "second", **scenario_args))
    pd.testing.assert_frame_equal(result.requests, again.requests)


@pytest.mark.parametrize("name", shipped(ROUTERS))
def test_router_conforms(tmp_path: Path, name: str) -> None:
    check_conformance(tmp_path, router={"name": name})


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
@pytest.mark.parametrize("name", shipped(BATCH_POLICIES))
def test_batch_policy_conforms(tmp_path: Path, name: str, preemption: str) -> None:
    check_conformance(tmp_path, batching={"name": name}, preemption=preemption)


@pytest.mark.parametrize("name", shipped(BATCH_POLICIES))
def test_batch_policy_conforms_with_tight_limits(tmp_path: Path, name: str) -> None:
    """Small budget and sequence cap with chunking (the long prompts then span several steps)."""
    params: dict[str, Any] = {"name": name, "max_num_seqs": 4, "max_batched_tokens": 3072}
    if "chunked_prefill" in BATCH_POLICIES.get(name).model_fields:
        params["chunked_prefill"] = True
        params["max_batched_tokens"] = 384
    check_conformance(tmp_path, batching=params)


@pytest.mark.parametrize("name", shipped(ADMISSION_POLICIES))
def test_admission_policy_conforms(tmp_path: Path, name: str) -> None:
    check_conformance(tmp_path, admission={"name": name})


def test_scenario_exercises_preemption_and_long_prompts(tmp_path: Path) -> None:
    """Guard against a vacuous scenario: memory pressure and multi-thousand-token prompts happen."""
    simulation, result, audit = run_audited(scenario(tmp_path))
    assert result.summary["events"]["preemptions"] > 0
    assert result.requests["prompt_tokens"].max() > 2000
    assert audit.max_tokens > 2000
    assert all(instance.kv.total_blocks <= KV_BLOCKS + 1 for instance in simulation.cluster.instances)


def test_every_kind_has_registered_policies() -> None:
    assert {"round_robin", "random", "jsq", "power_of_two"} <= set(shipped(ROUTERS))
    assert {"vllm", "sarathi"} <= set(shipped(BATCH_POLICIES))
    assert "aggressive" in shipped(ADMISSION_POLICIES)


def _batching_variants() -> list:
    """Every batch policy; those with a ``chunked_prefill`` switch in both settings."""
    variants = []
    for name in shipped(BATCH_POLICIES):
        fields = BATCH_POLICIES.get(name).model_fields
        settings = [False, True] if "chunked_prefill" in fields else [None]
        for chunked in settings:
            marks: list = []
            label = name if chunked is None else f"{name}-chunked={chunked}"
            variants.append(pytest.param(name, chunked, marks=marks, id=label))
    return variants


@pytest.mark.parametrize("name, chunked", _batching_variants())
def test_running_batch_never_exceeds_max_num_seqs(tmp_path: Path, name: str, chunked: bool | None) -> None:
    """max_num_seqs bounds the running batch (vLLM's scheduler budget), not only each step."""
    params: dict[str, Any] = {"name": name, "max_num_seqs": 2}
    if chunked is not None:
        params["chunked_prefill"] = chunked
    rows = [(0.001 * i, 100, 40) for i in range(8)]
    experiment = build_experiment(
        tmp_path, model="llama-2-7b",
        cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}]},
        workload=trace_workload(tmp_path, rows), batching=params, sim={"sample_interval_s": None})
    largest = []

    def after(instance: Instance, record: CommittedSteps) -> None:
        largest.append(len(instance.queues.running))

    with commit_hooks(after=after):
        simulation = Simulation(experiment)
        result = simulation.run()
    assert result.summary["requests"]["completed"] == len(rows)
    cap = simulation.cluster.instances[0].setup.limits.max_num_seqs
    assert max(largest) <= cap, f"running batch reached {max(largest)} sequences with max_num_seqs {cap}"
