"""Property tests of whole simulations on random small clusters and workloads.

Each example draws a cluster (1-3 instances in one or two groups, A100 or H100,
TP 1 or 2, often with so little KV memory that requests are preempted), a
batching and preemption policy, a router and a small workload, runs it, and
checks the run-level invariants of DESIGN.md section 6: no request is lost,
token totals match, per-request timestamps are ordered, KV accounting holds
and nothing is left allocated, simulated time never goes backwards, and the
same seed gives the same results.
"""

from __future__ import annotations

import copy

import json
import math
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings

from conftest import CommittedSteps, build_experiment, commit_hooks, memory_utilization, uniform
from simulator.engine.instance import Instance
from simulator.engine.request import RequestSpec
from simulator.runner import Simulation

GPU_NODES = {"a100-80gb": "dgx-a100", "h100-sxm": "dgx-h100"}
ROUTERS = [
    {"name": "round_robin"},
    {"name": "random"},
    {"name": "jsq", "load": "requests"},
    {"name": "jsq", "load": "tokens"},
    {"name": "jsq", "load": "kv"},
    {"name": "power_of_two"},
    {"name": "power_of_two", "load": "tokens"},
]
MODELS = ("llama-2-7b", "llama-3.1-8b")
# KV blocks a TP-1 instance gets: tiny (long prompts are rejected, preemption is constant),
# small (preemption under load) or roomy. TP-2 instances get more.
KV_BLOCKS_TP1 = (24, 60, 150, 400, 4000)


# A workload here is at most 60 requests of at most ~5000 prompt and ~600 output tokens:
# far fewer steps than this, even with preemption, unless the engine livelocks.
MAX_COMMITS = 200_000


@st.composite
def instance_groups(draw) -> list[dict[str, Any]]:
    total = draw(st.integers(1, 3))
    groups = draw(st.integers(1, min(2, total)))
    counts = [1] * groups
    counts[-1] += total - groups
    return [{"count": count, "gpu": (gpu := draw(st.sampled_from(sorted(GPU_NODES)))),
             "node": GPU_NODES[gpu], "tp": draw(st.sampled_from([1, 1, 2]))} for count in counts]


@st.composite
def batching(draw) -> dict[str, Any]:
    name = draw(st.sampled_from(["vllm", "vllm", "sarathi"]))
    policy: dict[str, Any] = {"name": name, "max_num_seqs": draw(st.sampled_from([2, 8, 64, 256]))}
    if name == "vllm":
        policy["chunked_prefill"] = draw(st.booleans())
        policy["max_batched_tokens"] = draw(st.sampled_from([512, 2048, 4096, 8192]))
    else:
        policy["max_batched_tokens"] = draw(st.sampled_from([256, 512, 2048]))
    return policy


@st.composite
def experiments(draw) -> dict[str, Any]:
    """Keyword overrides for ``conftest.experiment_dict``."""
    model = draw(st.sampled_from(MODELS))
    prompt_low = draw(st.integers(1, 2000))
    prompt_high = draw(st.integers(prompt_low, prompt_low + draw(st.sampled_from([0, 50, 1500, 3000]))))
    output_low = draw(st.integers(1, 200))
    output_high = draw(st.integers(output_low, output_low + draw(st.sampled_from([0, 20, 300]))))
    groups = draw(instance_groups())
    preemption = draw(st.sampled_from(["recompute", "swap"]))
    cluster: dict[str, Any] = {
        "instances": groups,
        "gpu_memory_utilization": memory_utilization(model, groups[0]["gpu"],
                                                     draw(st.sampled_from(KV_BLOCKS_TP1))),
        "preemption": preemption,
        "swap_space_gib_per_gpu": draw(st.sampled_from([0.05, 4.0])),
    }
    overrides: dict[str, Any] = {
        "seed": draw(st.integers(0, 2**32)),
        "model": model,
        "cluster": cluster,
        "rate": draw(st.sampled_from([200.0, 50.0, 5.0])),
        "num_requests": draw(st.integers(5, 60)),
        "prompt": uniform(prompt_low, prompt_high),
        "output": uniform(output_low, output_high),
        "router": draw(st.sampled_from(ROUTERS)),
        "batching": draw(batching()),
    }
    if draw(st.booleans()):
        overrides["workload"] = {"max_output_tokens": draw(st.integers(1, 400))}
    overrides["sim"] = {"fast_forward": draw(st.booleans()), "check_invariants": draw(st.booleans()),
                        "sample_interval_s": draw(st.sampled_from([None, 0.25]))}
    if draw(st.integers(0, 3)) == 0:
        overrides["sim"]["horizon_s"] = draw(st.sampled_from([0.5, 2.0, 10.0]))
    return overrides


def _ulps(t: float) -> float:
    return 1e-12 * max(1.0, abs(t))


@contextmanager
def watched_commits(log: list[CommittedSteps], max_commits: int = MAX_COMMITS) -> Iterator[None]:
    """Check at every commit (single step or decode run) that time moves forward on each instance.

    Steps start no earlier than the previous step of their instance ended, end no
    earlier than they start, are committed once they have ended, and the KV
    accounting holds after each commit.
    """
    last_end: dict[int, float] = {}

    def before(instance: Instance, record: CommittedSteps) -> None:
        assert all(math.isfinite(t) for t in (record.start, *record.ends))
        assert record.start >= 0.0
        for start, end in zip(record.starts, record.ends):
            assert start <= end, f"instance {instance.id}: step runs backwards ({start} -> {end})"
        previous = last_end.get(instance.id, 0.0)
        # Within an ulp or so: fast-forward runs sum step times while SimPy's clock advances by one
        # wait (see test_fast_forward_run_never_ends_after_the_clock for the exact check).
        assert record.start >= previous - _ulps(previous), (
            f"instance {instance.id}: step starts at {record.start!r} before the previous one ended {previous!r}")
        assert record.ends[-1] <= record.now + _ulps(record.now), (
            f"instance {instance.id}: step ending at {record.ends[-1]!r} committed early, at {record.now!r}")
        last_end[instance.id] = record.ends[-1]
        log.append(record)
        assert len(log) <= max_commits, f"over {max_commits} commits for a tiny workload: the run does not progress"

    def after(instance: Instance, record: CommittedSteps) -> None:
        instance.kv.check()
        assert 0 <= instance.kv.used_blocks <= instance.kv.total_blocks

    with commit_hooks(before, after):
        yield


def simulate(overrides: dict[str, Any], max_commits: int = MAX_COMMITS) -> tuple[Simulation, Any, list[CommittedSteps]]:
    log: list[CommittedSteps] = []
    with tempfile.TemporaryDirectory() as directory:
        experiment = build_experiment(Path(directory), **overrides)
        with watched_commits(log, max_commits):
            simulation = Simulation(experiment)
            result = simulation.run()
    return simulation, result, log


def check_conservation(result, horizon: float | None) -> None:
    requests: pd.DataFrame = result.requests
    counts = result.summary["requests"]
    assert counts["arrived"] == len(requests)
    assert counts["completed"] + counts["rejected"] + counts["unfinished"] == counts["arrived"]
    assert requests["request_id"].is_unique
    assert set(requests["status"]) <= {"finished", "rejected", "unfinished"}
    assert (requests["status"] == "finished").sum() == counts["completed"]
    assert (requests["status"] == "rejected").sum() == counts["rejected"]
    assert (requests["status"] == "unfinished").sum() == counts["unfinished"]
    if horizon is None:
        assert counts["unfinished"] == 0, "without a horizon every request must end"
    rejected = requests[requests["status"] == "rejected"]
    assert (rejected["reject_reason"].str.len() > 0).all(), "a rejection always has a reason"
    not_rejected = requests[requests["status"] != "rejected"]
    assert (not_rejected["reject_reason"] == "").all()


def check_tokens(result) -> None:
    requests = result.requests
    done = requests[requests["status"] == "finished"]
    assert (done["generated_tokens"] == done["output_tokens"]).all()
    assert int(done["generated_tokens"].sum()) == int(done["output_tokens"].sum())
    assert (requests["generated_tokens"] <= requests["output_tokens"]).all()
    assert (requests["generated_tokens"] >= 0).all()
    for column in ("num_preemptions", "prefix_hit_tokens", "recomputed_tokens"):
        assert (requests[column] >= 0).all()


def check_timestamps(result, horizon: float | None, simulated_s: float) -> None:
    requests = result.requests
    order = ["arrival_s", "first_scheduled_s", "first_token_s", "last_token_s", "finish_s"]
    times = requests[order].to_numpy(dtype=np.float64)
    for row, status in zip(times, requests["status"]):
        present = row[np.isfinite(row)]
        assert np.all(np.diff(present) >= 0), f"timestamps out of order: {dict(zip(order, row))}"
        assert np.all(present <= simulated_s + 1e-12)
        if status == "finished":
            assert np.isfinite(row).all(), "a completed request has every timestamp"
            assert row[4] == row[3], "a request finishes with its last token"
    done = requests[requests["status"] == "finished"]
    gaps_bound = (done["last_token_s"] - done["first_token_s"]).to_numpy()
    assert np.all(done["max_token_gap_s"].to_numpy() <= gaps_bound + 1e-12)
    one_token = done["generated_tokens"] == 1
    assert (done.loc[one_token, "max_token_gap_s"] == 0).all()
    if horizon is not None:
        assert simulated_s <= horizon + 1e-9


def check_instances(simulation: Simulation, horizon: float | None) -> None:
    still_active = set(simulation.cluster.active)  # emptied by record_unfinished; kept below
    assert not still_active
    for instance in simulation.cluster.instances:
        kv = instance.kv
        kv.check()
        assert 0 <= kv.used_blocks <= kv.total_blocks
        live = ({r.id for r in instance.queues.running} | {r.id for r in instance.queues.waiting}
                | {r.id for r in instance.queues.swapped})
        held = {rid for rid, holding in kv.holdings.items() if holding.blocks}
        assert held <= {r.id for r in instance.queues.running}, (
            f"instance {instance.id}: blocks held by requests that are not running: "
            f"{sorted(held - {r.id for r in instance.queues.running})}")
        if horizon is None:
            assert not live, f"instance {instance.id}: requests left in its queues"
            assert kv.used_blocks == 0, f"instance {instance.id}: {kv.used_blocks} blocks still used"
            assert instance.queues.pending_tokens == 0, (
                f"instance {instance.id}: pending_tokens {instance.queues.pending_tokens} after the run")
            if instance.host is not None:
                assert instance.host.used_bytes == 0


def check_commit_log(log: list[CommittedSteps], result) -> None:
    assert sum(record.steps for record in log) == result.summary["sim"]["steps"]
    nows = [record.now for record in log]
    assert all(a <= b for a, b in zip(nows, nows[1:])), "commits happen in time order"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=experiments())
def test_random_runs_keep_every_invariant(overrides: dict[str, Any]) -> None:
    horizon = overrides["sim"].get("horizon_s")
    simulation, result, log = simulate(overrides)
    simulated_s = result.summary["sim"]["simulated_s"]
    check_conservation(result, horizon)
    check_tokens(result)
    check_timestamps(result, horizon, simulated_s)
    check_instances(simulation, horizon)
    check_commit_log(log, result)
    counts = result.summary["requests"]
    event(f"preemptions: {result.summary['events']['preemptions'] > 0}")
    event(f"rejected: {counts['rejected'] > 0}")
    event(f"unfinished: {counts['unfinished'] > 0}")
    event(f"swap: {any(i.host is not None and i.host.capacity_bytes > 0 for i in simulation.cluster.instances)}")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=experiments())
def test_same_seed_same_summary(overrides: dict[str, Any]) -> None:
    _, first, _ = simulate(overrides)
    _, second, _ = simulate(overrides)
    volatile = ("wall_s", "requests_per_wall_s")
    a, b = json.loads(json.dumps(first.summary)), json.loads(json.dumps(second.summary))
    for key in volatile:
        a["sim"].pop(key)
        b["sim"].pop(key)
    assert a == b
    pd.testing.assert_frame_equal(first.requests, second.requests)


@st.composite
def shared_prefix_specs(draw) -> list[RequestSpec]:
    """Requests whose prompts start with leading slices of three prefix families (prefix caching)."""
    families = [tuple(range(1000 * f + 1, 1000 * f + 13)) for f in range(3)]
    specs, now = [], 0.0
    for _ in range(draw(st.integers(3, 30))):
        now += draw(st.sampled_from([0.0, 0.001, 0.02, 0.2]))
        family = families[draw(st.integers(0, 2))]
        specs.append(RequestSpec(now, draw(st.integers(1, 800)), draw(st.integers(1, 80)),
                                 prefix_hashes=family[:draw(st.integers(0, 12))],
                                 prefix_block_tokens=draw(st.sampled_from([16, 32, 64]))))
    return specs


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=shared_prefix_specs(), blocks=st.sampled_from([30, 80, 400]),
       preemption=st.sampled_from(["recompute", "swap"]), chunked=st.booleans(),
       fast_forward=st.booleans(), instances=st.integers(1, 2))
def test_prefix_sharing_keeps_every_invariant(specs: list[RequestSpec], blocks: int, preemption: str,
                                              chunked: bool, fast_forward: bool, instances: int) -> None:
    """Requests sharing prompt prefixes (engine prefix cache, shared and cached blocks, LRU eviction)."""
    overrides = prefix_experiment(blocks, preemption, chunked, fast_forward, instances)
    simulation, result, log = replay(overrides, specs)
    check_conservation(result, None)
    check_tokens(result)
    check_timestamps(result, None, result.summary["sim"]["simulated_s"])
    check_instances(simulation, None)
    check_commit_log(log, result)
    requests = result.requests
    assert len(requests) == len(specs)
    assert result.summary["events"]["prefix_hit_tokens"] == int(requests["prefix_hit_tokens"].sum())
    assert (requests["prefix_hit_tokens"] % 16 == 0).all(), "hits are whole blocks"
    event(f"prefix hits: {int(requests['prefix_hit_tokens'].sum()) > 0}")


def prefix_experiment(blocks: int, preemption: str, chunked: bool, fast_forward: bool,
                      instances: int) -> dict[str, Any]:
    """Llama-3.1-8B on H100s with about ``blocks`` KV blocks each, for replaying given specs."""
    return {
        "model": "llama-3.1-8b",
        "cluster": {"node": "dgx-h100", "preemption": preemption,
                    "instances": [{"count": instances, "gpu": "h100-sxm", "tp": 1}],
                    "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", blocks)},
        "router": {"name": "round_robin"},
        "batching": {"name": "vllm", "chunked_prefill": chunked, "max_batched_tokens": 2048, "max_num_seqs": 64},
        "sim": {"fast_forward": fast_forward, "sample_interval_s": None},
    }


def replay(overrides: dict[str, Any], specs: list[RequestSpec]) -> tuple[Simulation, Any, list[CommittedSteps]]:
    log: list[CommittedSteps] = []
    with tempfile.TemporaryDirectory() as directory:
        with watched_commits(log):
            simulation = Simulation(build_experiment(Path(directory), **overrides))
            simulation.workload = specs  # the engine replays any iterable of RequestSpec
            result = simulation.run()
    return simulation, result, log


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=shared_prefix_specs(), blocks=st.sampled_from([30, 80, 400]),
       preemption=st.sampled_from(["recompute", "swap"]), chunked=st.booleans())
def test_fast_forward_equals_stepping_with_a_prefix_cache(specs: list[RequestSpec], blocks: int, preemption: str,
                                                          chunked: bool) -> None:
    """Which cached blocks an allocation evicts decides later prefix hits, so fast-forward must
    allocate and free in stepping's order, also when a run goes on past its requests' finishes."""
    tables = [replay(prefix_experiment(blocks, preemption, chunked, fast_forward, 1), copy.deepcopy(specs))[1].requests
              for fast_forward in (False, True)]
    stepped, forwarded = tables
    exact = [c for c in stepped.columns if c not in TIME_COLUMNS]
    pd.testing.assert_frame_equal(stepped[exact], forwarded[exact])
    for column in TIME_COLUMNS:
        np.testing.assert_allclose(forwarded[column].to_numpy(dtype=np.float64),
                                   stepped[column].to_numpy(dtype=np.float64), rtol=1e-9, atol=0, equal_nan=True,
                                   err_msg=column)
    event(f"prefix hits: {int(stepped['prefix_hit_tokens'].sum()) > 0}")


TIME_COLUMNS = ("first_scheduled_s", "first_token_s", "last_token_s", "finish_s", "max_token_gap_s")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=experiments())
def test_fast_forward_equals_stepping(overrides: dict[str, Any]) -> None:
    """Same tokens, same order, same statuses; times within 1e-9 relative (DESIGN.md section 2).

    Runs to completion: a horizon that cuts a fast-forward run is covered by
    test_exact_scenarios.test_horizon_during_a_fast_forward_run_records_its_tokens.
    """
    sim = {key: value for key, value in overrides["sim"].items() if key != "horizon_s"}
    stepped_overrides = {**overrides, "sim": {**sim, "fast_forward": False}}
    forwarded_overrides = {**overrides, "sim": {**sim, "fast_forward": True}}
    _, stepped, _ = simulate(stepped_overrides)
    _, forwarded, log = simulate(forwarded_overrides)
    a, b = stepped.requests, forwarded.requests
    exact = [c for c in a.columns if c not in TIME_COLUMNS and c != "arrival_s"]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    assert a["arrival_s"].equals(b["arrival_s"])
    for column in TIME_COLUMNS:
        x, y = a[column].to_numpy(dtype=np.float64), b[column].to_numpy(dtype=np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(y)), column
        np.testing.assert_allclose(y, x, rtol=1e-9, atol=0, equal_nan=True, err_msg=column)
    assert stepped.summary["sim"]["steps"] == forwarded.summary["sim"]["steps"]
    assert stepped.summary["requests"] == forwarded.summary["requests"]


# ------------------------------------------------------------ regressions
@pytest.mark.parametrize("preemption, batching, prompt", [
    ("swap", {"name": "vllm", "chunked_prefill": False}, 300),
    ("recompute", {"name": "vllm", "chunked_prefill": False}, 300),
    ("recompute", {"name": "sarathi", "max_batched_tokens": 256}, 2000),
], ids=["swap", "recompute", "recompute-chunked"])
def test_request_routed_to_an_instance_too_small_for_it(preemption: str, batching: dict[str, Any],
                                                        prompt: int) -> None:
    """Instance 0 (TP 1) holds 24 blocks = 384 tokens; instance 1 (TP 2) holds over 2800 blocks.

    Round robin would put request 0 on instance 0, where it can start but never
    finish: with swap the run used to die ("swapped request cannot be swapped back
    in on an idle instance"), with recompute the request was rejected after
    generating tokens, and with chunked prefill the run livelocked (admit a
    chunk, preempt itself, forever). A request the cluster can hold must
    complete, on an instance that can hold it.
    """
    overrides = {
        "model": "llama-2-7b",
        "cluster": {"node": "dgx-h100", "preemption": preemption,
                    "gpu_memory_utilization": memory_utilization("llama-2-7b", "h100-sxm", 24),
                    "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1},
                                  {"count": 1, "gpu": "h100-sxm", "tp": 2}]},
        "num_requests": 2, "prompt": uniform(prompt, prompt), "output": uniform(200, 200),
        "router": {"name": "round_robin"}, "batching": batching,
    }
    simulation, result, _ = simulate(overrides, max_commits=5_000)
    small, large = (instance.kv.total_blocks * 16 for instance in simulation.cluster.instances)
    assert small < prompt + 200 <= large
    check_conservation(result, None)
    assert result.summary["requests"]["completed"] == 2, result.requests[["status", "reject_reason"]]
    assert (result.requests["instance_id"] == 1).all(), "only instance 1 can hold these requests"
    assert (result.requests["num_preemptions"] == 0).all()
