"""Hand-computable scenarios: timings that must equal the cost model's numbers exactly.

Requests come from a trace written by the test (``start_at_zero: false``), so
arrival times are exact, and every expectation is computed from the
instance's own cost model object.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import build_experiment, memory_utilization, recorded_steps, trace_workload
from simulator.perf.shape import StepShape
from simulator.runner import Simulation

PROMPT, OUTPUT = 1024, 128


def lone_request_experiment(directory: Path, rows: list[tuple[float, int, int]], *, instances: int = 1,
                            fast_forward: bool = True, **batching: Any):
    policy: dict[str, Any] = {"name": "vllm", "max_num_seqs": 64, "max_batched_tokens": 8192}
    if batching.get("name", "vllm") == "vllm":
        policy["chunked_prefill"] = False
    policy.update(batching)
    return build_experiment(
        directory, model="llama-3.1-8b",
        cluster={"node": "dgx-h100", "instances": [{"count": instances, "gpu": "h100-sxm", "tp": 1}]},
        workload=trace_workload(directory, rows),
        router={"name": "round_robin"}, batching=policy,
        sim={"fast_forward": fast_forward, "sample_interval_s": None})


def _run(experiment) -> tuple[Simulation, Any, list]:
    with recorded_steps() as steps:
        simulation = Simulation(experiment)
        result = simulation.run()
    return simulation, result, steps


def _decode_gaps(cost_model, prompt: int, output: int) -> np.ndarray:
    """Gap before token k+2 (k = 0..output-2): one decode over a context of prompt + k tokens."""
    return np.array([cost_model.decode_time_s(1, prompt + k) for k in range(output - 1)])


# --------------------------------------------------------------- one request
@pytest.mark.parametrize("fast_forward", [False, True], ids=["stepped", "fast-forward"])
def test_lone_request_ttft_and_tpot_are_the_cost_models(tmp_path: Path, fast_forward: bool) -> None:
    experiment = lone_request_experiment(tmp_path, [(0.0, PROMPT, OUTPUT)], fast_forward=fast_forward)
    simulation, result, steps = _run(experiment)
    cost = simulation.cluster.instances[0].cost_model
    row = result.requests.iloc[0]
    assert row["status"] == "finished"
    assert row["generated_tokens"] == OUTPUT

    # TTFT: one prefill step of the whole prompt, starting at arrival.
    prefill = cost.prefill_time_s(PROMPT)
    assert row["first_scheduled_s"] == 0.0
    assert row["first_token_s"] == prefill
    ttft = row["first_token_s"] - row["arrival_s"]
    assert ttft == prefill
    assert result.summary["ttft_s"]["mean"] == prefill

    # Every later token: a one-sequence decode over the context so far.
    gaps = _decode_gaps(cost, PROMPT, OUTPUT)
    expected_tpot = float(gaps.mean())
    tpot = (row["last_token_s"] - row["first_token_s"]) / (OUTPUT - 1)
    assert tpot == pytest.approx(expected_tpot, rel=1e-12)
    assert result.summary["tpot_s"]["mean"] == pytest.approx(expected_tpot, rel=1e-12)
    assert row["max_token_gap_s"] == pytest.approx(float(gaps.max()), rel=1e-12)
    assert row["finish_s"] == row["last_token_s"]
    assert row["finish_s"] - row["arrival_s"] == pytest.approx(prefill + gaps.sum(), rel=1e-12)

    # Steps: one prefill, then OUTPUT - 1 decodes (possibly committed as one run).
    assert sum(record.steps for record in steps) == OUTPUT
    assert result.summary["sim"]["steps"] == OUTPUT
    first = steps[0]
    assert first.plan.shape == StepShape.for_sequence(PROMPT, 0, samples=True)
    assert first.ends == (prefill,)


def test_lone_request_each_gap_matches_step_by_step(tmp_path: Path) -> None:
    """Stepped mode: the k-th decode step is exactly decode_time_s(1, prompt + k) long."""
    experiment = lone_request_experiment(tmp_path, [(0.0, PROMPT, OUTPUT)], fast_forward=False)
    simulation, _, steps = _run(experiment)
    cost = simulation.cluster.instances[0].cost_model
    assert [record.steps for record in steps] == [1] * OUTPUT
    for k, record in enumerate(steps[1:]):
        assert record.plan.shape == StepShape.for_sequence(1, PROMPT + k, samples=True)
        assert record.ends[0] - record.start == pytest.approx(cost.decode_time_s(1, PROMPT + k), rel=1e-12)
        assert record.start == steps[k].ends[-1], "steps follow each other with no idle time"


def test_fast_forward_matches_stepping_for_a_lone_request(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, stepped, _ = _run(lone_request_experiment(tmp_path / "a", [(0.0, PROMPT, OUTPUT)], fast_forward=False))
    _, forwarded, _ = _run(lone_request_experiment(tmp_path / "b", [(0.0, PROMPT, OUTPUT)], fast_forward=True))
    for column in ("first_token_s", "last_token_s", "finish_s", "max_token_gap_s"):
        assert forwarded.requests[column].iloc[0] == pytest.approx(stepped.requests[column].iloc[0], rel=1e-9)
    assert forwarded.summary["sim"]["steps"] == stepped.summary["sim"]["steps"]


def test_ttft_of_a_late_arrival(tmp_path: Path) -> None:
    """A request arriving at 0.75 s on an idle instance starts at once: TTFT is the prefill time."""
    experiment = lone_request_experiment(tmp_path, [(0.75, PROMPT, 4)])
    simulation, result, _ = _run(experiment)
    cost = simulation.cluster.instances[0].cost_model
    row = result.requests.iloc[0]
    assert row["arrival_s"] == 0.75
    assert row["first_scheduled_s"] == 0.75
    assert row["first_token_s"] - row["arrival_s"] == pytest.approx(cost.prefill_time_s(PROMPT), rel=1e-12)


# ----------------------------------------------------- two identical requests
def test_two_requests_on_two_instances_get_identical_timings(tmp_path: Path) -> None:
    experiment = lone_request_experiment(tmp_path, [(0.0, PROMPT, OUTPUT), (0.0, PROMPT, OUTPUT)], instances=2)
    simulation, result, _ = _run(experiment)
    requests = result.requests
    assert list(requests["instance_id"]) == [0, 1], "round robin puts one request on each instance"
    assert (requests["status"] == "finished").all()
    columns = ["first_scheduled_s", "first_token_s", "last_token_s", "finish_s", "max_token_gap_s",
               "generated_tokens"]
    first, second = requests.iloc[0], requests.iloc[1]
    for column in columns:
        assert first[column] == second[column], column
    cost = simulation.cluster.instances[0].cost_model
    assert first["first_token_s"] == cost.prefill_time_s(PROMPT)
    stats = simulation.instance_stats
    assert stats[0].steps == stats[1].steps == OUTPUT
    assert stats[0].busy_s == stats[1].busy_s


def test_two_requests_on_one_instance_are_prefilled_together(tmp_path: Path) -> None:
    """Two prompts arriving together fit one prefill step: both see the same first token time."""
    experiment = lone_request_experiment(tmp_path, [(0.0, 256, 8), (0.0, 256, 8)])
    simulation, result, steps = _run(experiment)
    cost = simulation.cluster.instances[0].cost_model
    one = StepShape.for_sequence(256, 0, samples=True)
    both = StepShape(512, 2, 2, 2 * one.attention_pairs, 2 * one.kv_read_tokens)
    assert steps[0].plan.shape == both
    expected = float(cost.step_time_s(both))
    assert list(result.requests["first_token_s"]) == [expected, expected]


# ------------------------------------------------ prompts beyond the budget
def test_prompt_beyond_budget_is_rejected_without_chunked_prefill(tmp_path: Path) -> None:
    experiment = lone_request_experiment(tmp_path, [(0.0, 1000, 16), (0.0, 200, 4)],
                                         max_batched_tokens=256, chunked_prefill=False)
    _, result, _ = _run(experiment)
    long, short = result.requests.iloc[0], result.requests.iloc[1]
    assert long["status"] == "rejected"
    assert long["reject_reason"], "a rejection carries its reason"
    assert "256" in long["reject_reason"] and "1000" in long["reject_reason"]
    assert long["generated_tokens"] == 0
    assert short["status"] == "finished", "a rejection does not block the requests behind it"
    counts = result.summary["requests"]
    assert (counts["completed"], counts["rejected"], counts["unfinished"]) == (1, 1, 0)


@pytest.mark.parametrize("prompt, budget", [(1000, 256), (1024, 256), (1025, 512), (300, 299)])
def test_chunked_prefill_takes_ceil_prompt_over_budget_steps(tmp_path: Path, prompt: int, budget: int) -> None:
    experiment = lone_request_experiment(tmp_path, [(0.0, prompt, 16)], max_batched_tokens=budget,
                                         chunked_prefill=True)
    simulation, result, steps = _run(experiment)
    cost = simulation.cluster.instances[0].cost_model
    row = result.requests.iloc[0]
    assert row["status"] == "finished"
    chunks = math.ceil(prompt / budget)
    prefill_steps = steps[:chunks]
    assert all(record.steps == 1 for record in prefill_steps)
    expected_end, done = 0.0, 0
    for index, record in enumerate(prefill_steps):
        size = min(budget, prompt - done)
        last = index == chunks - 1
        assert record.plan.shape == StepShape.for_sequence(size, done, samples=last)
        assert record.plan.shape.num_tokens <= budget
        expected_end += float(cost.step_time_s(StepShape.for_sequence(size, done, samples=last)))
        assert record.ends == (expected_end,)
        done += size
    assert row["first_token_s"] == expected_end, "the first token comes with the last chunk"
    assert sum(record.steps for record in steps) == chunks + 15


def test_sarathi_chunks_long_prompts(tmp_path: Path) -> None:
    experiment = lone_request_experiment(tmp_path, [(0.0, 2000, 4)], name="sarathi", max_batched_tokens=512)
    _, result, steps = _run(experiment)
    assert result.requests.iloc[0]["status"] == "finished"
    assert [record.plan.shape.num_tokens for record in steps[:4]] == [512, 512, 512, 464]


# ------------------------------------------- fast-forward and the SimPy clock
class ConstantStepCost:
    """A cost model whose every step takes ``step_s`` and does no work (scalars or arrays alike)."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s

    def step_time_s(self, shape: StepShape):
        tokens = np.asarray(shape.num_tokens, dtype=np.float64)
        return self.step_s if tokens.ndim == 0 else np.full(tokens.shape, self.step_s)

    def work(self, shape: StepShape):
        tokens = np.asarray(shape.num_tokens, dtype=np.float64)
        zero = 0.0 if tokens.ndim == 0 else np.zeros(tokens.shape)
        return zero, zero


def _clock_mismatch() -> tuple[float, float, int]:
    """(arrival, step, decode steps) for which summing step times from the run's start ends later
    than SimPy's clock after one wait of (end - start): start + (end - start) < end in floats."""
    for step in (0.1, 0.01, 0.03, 0.007, 0.011, 0.013, 0.017, 0.019, 0.023, 0.029):
        for arrival in (1.0, 0.2, 0.6, 1.0 / 3.0, 2.5, 0.05):
            start = arrival + step
            for length in range(2, 200):
                end = float(np.cumsum(np.concatenate(([start], np.full(length, step))))[-1])
                if start + (end - start) < end:
                    return arrival, step, length
    raise AssertionError("no float mismatch found in the grid")


def test_fast_forward_run_never_ends_after_the_clock(tmp_path: Path) -> None:
    arrival, step, decode_steps = _clock_mismatch()
    experiment = lone_request_experiment(tmp_path, [(arrival, 64, decode_steps + 1)], fast_forward=True)
    with recorded_steps() as steps:
        simulation = Simulation(experiment)
        simulation.cluster.instances[0].cost_model = ConstantStepCost(step)
        result = simulation.run()
    assert any(record.steps > 1 for record in steps), "the decode stretch ran as one fast-forward run"
    row = result.requests.iloc[0]
    assert row["status"] == "finished"
    for record in steps:
        assert record.ends[-1] <= record.now, f"steps ending at {record.ends[-1]!r} committed at {record.now!r}"
    assert row["finish_s"] <= result.summary["sim"]["simulated_s"], "a request finished after the run ended"


def test_fixed_lengths_through_the_shared_fixtures(make_experiment, run_sim) -> None:
    """The conftest factory and runner: fixed lengths give exactly those token counts."""
    result = run_sim(make_experiment(prompt={"dist": "fixed", "tokens": 100},
                                     output={"dist": "fixed", "tokens": 7}, num_requests=12))
    requests = result.requests
    assert len(requests) == 12
    assert (requests["status"] == "finished").all()
    assert (requests["prompt_tokens"] == 100).all() and (requests["generated_tokens"] == 7).all()


def test_prefix_cache_hit_skips_the_cached_prompt(tmp_path: Path) -> None:
    """A repeat of a finished request's prompt computes only its last block (vLLM keeps >= 1 token).

    The first request's 64 prompt blocks stay cached after it finishes; the
    second, identical prompt hits 63 of them (1008 tokens) and its first step
    computes the remaining 16 tokens over a 1008-token context.
    """
    from simulator.engine.request import RequestSpec

    hashes = tuple(range(101, 117))  # 16 hashes of 64 tokens cover the 1024-token prompt
    specs = [RequestSpec(0.0, PROMPT, 4, prefix_hashes=hashes, prefix_block_tokens=64),
             RequestSpec(5.0, PROMPT, 4, prefix_hashes=hashes, prefix_block_tokens=64)]
    experiment = lone_request_experiment(tmp_path, [(0.0, 1, 1)])
    with recorded_steps() as steps:
        simulation = Simulation(experiment)
        simulation.workload = specs
        result = simulation.run()
    cost = simulation.cluster.instances[0].cost_model
    first, second = result.requests.iloc[0], result.requests.iloc[1]
    assert first["prefix_hit_tokens"] == 0
    assert first["first_token_s"] == cost.prefill_time_s(PROMPT)
    assert second["prefix_hit_tokens"] == 1008
    shape = StepShape.for_sequence(16, 1008, samples=True)
    second_prefill = [record for record in steps if record.start >= 5.0][0]
    assert second_prefill.plan.shape == shape
    assert second["first_token_s"] - second["arrival_s"] == pytest.approx(float(cost.step_time_s(shape)),
                                                                          rel=1e-12)
    assert result.summary["events"]["prefix_hit_tokens"] == 1008


def test_horizon_during_a_fast_forward_run_records_its_tokens(tmp_path: Path) -> None:
    rows = []
    for fast_forward in (False, True):
        folder = tmp_path / str(fast_forward)
        folder.mkdir()
        experiment = build_experiment(
            folder, model="llama-3.1-8b",
            cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}]},
            workload=trace_workload(folder, [(0.0, PROMPT, OUTPUT)]),
            batching={"name": "vllm", "chunked_prefill": False},
            sim={"fast_forward": fast_forward, "sample_interval_s": None, "horizon_s": 0.5})
        _, result, _ = _run(experiment)
        row = result.requests.iloc[0]
        assert row["status"] == "unfinished"
        assert result.summary["sim"]["steps"] == row["generated_tokens"], "one token per step of a lone request"
        rows.append(row)
    stepped, forwarded = rows
    assert 1 < stepped["generated_tokens"] < OUTPUT
    assert forwarded["generated_tokens"] == stepped["generated_tokens"]
    assert forwarded["last_token_s"] == pytest.approx(stepped["last_token_s"], rel=1e-9)


def test_a_step_cut_by_the_horizon_counts_as_busy_until_the_horizon(tmp_path: Path) -> None:
    """Steps of 0.25 s with work to do until 1.75 s; the horizon at 1.1 s cuts the step running from
    1.0 s. The GPU was busy the whole 1.1 s, in stepping and in fast-forward (where the cut step
    is inside a decode run) alike."""
    for fast_forward in (False, True):
        folder = tmp_path / str(fast_forward)
        folder.mkdir()
        experiment = build_experiment(
            folder, model="llama-3.1-8b",
            cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}]},
            workload=trace_workload(folder, [(0.0, 64, 6)]),
            batching={"name": "vllm", "chunked_prefill": False},
            sim={"fast_forward": fast_forward, "sample_interval_s": None, "horizon_s": 1.1})
        simulation = Simulation(experiment)
        simulation.cluster.instances[0].cost_model = ConstantStepCost(0.25)
        result = simulation.run()
        assert result.summary["sim"]["steps"] == 4  # committed: ends at 0.25, 0.5, 0.75 and 1.0
        assert simulation.instance_stats[0].busy_s == pytest.approx(1.1, rel=1e-12), fast_forward
        assert result.summary["utilization"]["gpu_busy"] == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("prompt_a, horizon_s", [(61, 1.1), (60, 1.3), (59, 1.6)],
                         ids=["first-segment", "first-step-of-a-later-segment", "later-segment"])
def test_kv_use_up_to_a_horizon_counts_the_blocks_of_the_step_in_flight(tmp_path: Path, prompt_a: int,
                                                                        horizon_s: float) -> None:
    """Steps of 0.25 s; decode step k runs from 0.25 (k + 1) s. B (64 tokens, 5 out) finishes at
    1.25 s, after which the run goes on with A alone. A's token 64 opens its fifth block in
    step 3, 4 or 5 (prompts 61, 60, 59): in the first segment, in the first step of the next, or
    later in it. A horizon inside that step must see the new block in the KV mean and peak, as
    stepping (whose plan allocated it) does."""
    summaries = []
    for fast_forward in (False, True):
        folder = tmp_path / str(fast_forward)
        folder.mkdir()
        experiment = build_experiment(
            folder, model="llama-3.1-8b",
            cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}],
                     "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", 20),
                     "block_size_tokens": 16},
            workload=trace_workload(folder, [(0.0, prompt_a, 40), (0.0, 64, 5)]),
            batching={"name": "vllm", "chunked_prefill": False},
            sim={"fast_forward": fast_forward, "sample_interval_s": None, "horizon_s": horizon_s})
        simulation = Simulation(experiment)
        simulation.cluster.instances[0].cost_model = ConstantStepCost(0.25)
        summaries.append(simulation.run().summary["utilization"])
    stepped, forwarded = summaries
    assert forwarded["kv_peak"] == stepped["kv_peak"]
    assert forwarded["kv_mean"] == pytest.approx(stepped["kv_mean"], rel=1e-12)


def test_horizon_at_the_end_of_a_fast_forward_run(tmp_path: Path) -> None:
    """Steps of 0.25 s: prefill ends at 0.25, decodes at 0.5, 0.75 and 1.0 = the horizon, when request 0
    (4 tokens) finishes. Fast-forward must record what stepping records."""
    tables = []
    for fast_forward in (False, True):
        folder = tmp_path / str(fast_forward)
        folder.mkdir()
        experiment = build_experiment(
            folder, model="llama-3.1-8b",
            cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}]},
            workload=trace_workload(folder, [(0.0, 64, 4), (0.0, 64, 7)]),
            batching={"name": "vllm", "chunked_prefill": False},
            sim={"fast_forward": fast_forward, "sample_interval_s": None, "horizon_s": 1.0})
        simulation = Simulation(experiment)
        simulation.cluster.instances[0].cost_model = ConstantStepCost(0.25)
        result = simulation.run()
        tables.append(result.requests[["status", "generated_tokens", "finish_s"]])
    stepped, forwarded = tables
    assert list(stepped["status"]) == ["finished", "unfinished"]
    assert stepped.equals(forwarded)


# ------------------------------------------------- runs that go on past a finish
def _prefix_scenario(directory: Path, fast_forward: bool):
    """Six KV blocks of 16 tokens. A (two hashed prompt blocks) finishes at once and leaves its
    blocks cached. B (16 + 3 tokens) and C (30 tokens, long output) then fill the other four;
    C's third decode needs a fifth block just as B finishes, and only A's cached blocks are
    left to evict. D (A's prefix) arrives while C goes on: its hit shows whether A's blocks
    were evicted before B's were freed (as stepping does) or after."""
    from simulator.engine.request import RequestSpec

    specs = [RequestSpec(0.0, 32, 1, prefix_hashes=(1, 2), prefix_block_tokens=16),
             RequestSpec(1.0, 16, 4), RequestSpec(1.0, 30, 20),
             RequestSpec(1.1, 40, 2, prefix_hashes=(1, 2, 3), prefix_block_tokens=16)]
    experiment = build_experiment(
        directory, model="llama-3.1-8b",
        cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}],
                 "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", 6),
                 "watermark_fraction": 0.0},
        batching={"name": "vllm", "chunked_prefill": False}, sim={"fast_forward": fast_forward,
                                                                   "sample_interval_s": None})
    with recorded_steps() as steps:
        simulation = Simulation(experiment)
        simulation.workload = specs  # the engine replays any iterable of RequestSpec
        result = simulation.run()
    return simulation, result, steps


def test_a_run_goes_on_past_a_finish_and_evicts_as_stepping_does(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    simulation, stepped, _ = _prefix_scenario(tmp_path / "a", fast_forward=False)
    assert simulation.cluster.instances[0].kv.total_blocks == 6
    _, forwarded, steps = _prefix_scenario(tmp_path / "b", fast_forward=True)
    # Stepping evicted A's last block for C's growth before B freed its own: D hits one block.
    assert list(stepped.requests["prefix_hit_tokens"]) == [0, 0, 0, 16], stepped.requests
    # Gaps inside a run are step durations, when stepping differences of step ends: an ulp apart.
    gaps = "max_token_gap_s"
    assert stepped.requests.drop(columns=[gaps]).equals(forwarded.requests.drop(columns=[gaps]))
    assert forwarded.requests[gaps].to_numpy() == pytest.approx(stepped.requests[gaps].to_numpy(), rel=1e-12)
    # The run over B and C went on with C alone when B finished: a segment starting where the
    # previous one ended, without a plan in between.
    runs = [s for s in steps if len(s.ends) > 1 or s.plan.decodes == len(s.plan.entries)]
    chained = [(a, b) for a, b in zip(runs, runs[1:])
               if b.start == a.ends[-1] and len(b.plan.entries) == len(a.plan.entries) - 1]
    assert chained, "no run went on past a finish"
