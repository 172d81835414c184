"""A decode run cut short by an arrival is held while the policy plans around it, then goes on.

With an admission policy that looks only at the waiting queue and free memory,
the steps after an arrival give every running request its decode token beside
the newcomer's prompt (chunked prefill), or run the prompt alone while the
batch waits (whole prompts); the engine neither brings the batch up to date nor
visits it for them, and the newcomer then joins the run with its own count of
steps (``simulator.engine.run_driver``). Every step here
takes 0.25 s (``ConstantStepCost``), so each scenario's times are exact; each
is run stepping and fast-forwarding, which must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import build_experiment, engine_overrides, memory_utilization, trace_workload
from simulator.engine.run_driver import RunDriver
from simulator.engine.run_progress import FinishOrder, GapMaxima
from simulator.runner import Simulation
from test_exact_scenarios import ConstantStepCost

STEP_S = 0.25


def scenario(directory: Path, rows: list[tuple[float, int, int]], fast_forward: bool, *,
             admission: str = "aggressive", chunked: bool = True, horizon_s: float | None = None,
             blocks: int | None = None) -> Simulation:
    cluster: dict[str, Any] = {"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}]}
    if blocks is not None:
        cluster["gpu_memory_utilization"] = memory_utilization("llama-3.1-8b", "h100-sxm", blocks)
    sim: dict[str, Any] = {"fast_forward": fast_forward, "sample_interval_s": None}
    if horizon_s is not None:
        sim["horizon_s"] = horizon_s
    experiment = build_experiment(
        directory, model="llama-3.1-8b", cluster=cluster, workload=trace_workload(directory, rows),
        router={"name": "round_robin"}, admission={"name": admission},
        batching={"name": "vllm", "chunked_prefill": chunked, "max_batched_tokens": 2048}, sim=sim)
    simulation = Simulation(experiment)
    simulation.cluster.instances[0].cost_model = ConstantStepCost(STEP_S)
    return simulation


def run_both(tmp_path: Path, rows, **options):
    """Stepping's and fast-forward's results, and how often fast-forward held a run."""
    holds = []

    def counting_hold(self, run, steps):
        holds.append(steps)
        RunDriver._hold(self, run, steps)

    results = []
    with engine_overrides(driver={"_hold": counting_hold}):
        for fast_forward in (False, True):
            folder = tmp_path / str(fast_forward)
            folder.mkdir()
            simulation = scenario(folder, rows, fast_forward, **options)
            results.append((simulation, simulation.run()))
    return results[0], results[1], holds


def full_scheduling_passes(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records ``(policy, now_s)`` for every full scheduling pass of the vLLM-style policy (its
    ``schedule``, which loops over the running batch), as opposed to a step planned around a held run."""
    from policies.batching.continuous import ContinuousBatching

    passes = []
    original = ContinuousBatching.schedule

    def counting_schedule(self, state, builder, now_s):
        passes.append((self, now_s))
        original(self, state, builder, now_s)

    monkeypatch.setattr(ContinuousBatching, "schedule", counting_schedule)
    return passes


def test_an_arrival_is_planned_around_the_held_batch(tmp_path):
    """A (100 tokens, 20 out) prefills in [0, 0.25] and decodes from there; C arrives at 1.1 s,
    inside A's step [1.0, 1.25]: that step completes, the next, [1.25, 1.5], holds A's decode and
    C's whole prompt, and C's first token comes at 1.5 s. A's tokens keep their 0.25 s rhythm."""
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, [(0.0, 100, 20), (1.1, 300, 5)])
    assert holds == [4], "the run of A's decodes from 0.25 s was held after its 4 steps ending at 1.25 s"
    for result in (stepped, forwarded):
        a, c = result.requests.sort_values("request_id").to_dict("records")
        assert a["first_token_s"] == STEP_S and a["finish_s"] == pytest.approx(20 * STEP_S)
        assert a["max_token_gap_s"] == pytest.approx(STEP_S)
        assert c["first_scheduled_s"] == pytest.approx(1.25) and c["first_token_s"] == pytest.approx(1.5)
        assert c["finish_s"] == pytest.approx(1.5 + 4 * STEP_S)
    assert stepped.requests.equals(forwarded.requests)
    assert stepped.summary["sim"]["steps"] == forwarded.summary["sim"]["steps"] == 20
    # Every gap, held or not, reaches the histogram (its mean is exact).
    assert forwarded.summary["tbt_s"]["mean"] == pytest.approx(stepped.summary["tbt_s"]["mean"], rel=1e-12)
    assert forwarded.summary["tbt_s"]["p99"] == stepped.summary["tbt_s"]["p99"]


def test_a_request_that_finishes_in_the_step_planned_around_it(tmp_path):
    """A's last token (6 of 6) is the decode of the step planned around the held run: A finishes
    at its end, with C's first token."""
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, [(0.0, 100, 6), (1.1, 300, 3)])
    assert holds == [4]
    a, c = forwarded.requests.sort_values("request_id").to_dict("records")
    assert a["finish_s"] == pytest.approx(1.5) == c["first_token_s"]
    assert stepped.requests.equals(forwarded.requests)
    assert forwarded.summary["requests"]["completed"] == 2


@pytest.mark.parametrize("horizon_s", [1.3, 1.5])
def test_horizon_in_the_step_planned_around_a_held_run(tmp_path, horizon_s):
    """The simulation ends inside (1.3 s) or at the end of (1.5 s) the step planned around the
    held run: requests, busy time and KV use are those of stepping (whose plan allocated the
    step's blocks when it began)."""
    (sim_a, stepped), (sim_b, forwarded), holds = run_both(
        tmp_path, [(0.0, 95, 40), (0.0, 31, 40), (1.1, 300, 5)], horizon_s=horizon_s)
    assert holds == [4]
    assert stepped.requests.equals(forwarded.requests)
    assert forwarded.summary["utilization"]["kv_peak"] == stepped.summary["utilization"]["kv_peak"]
    assert forwarded.summary["utilization"]["kv_mean"] == pytest.approx(stepped.summary["utilization"]["kv_mean"],
                                                                        rel=1e-12)
    assert sim_b.instance_stats[0].busy_s == pytest.approx(sim_a.instance_stats[0].busy_s, rel=1e-12)
    for simulation in (sim_a, sim_b):
        kv = simulation.cluster.instances[0].kv
        kv.check()
        assert kv.reserved == 0, "every block reserved for the held run was claimed"


def test_memory_for_the_held_decodes_is_taken_before_the_newcomer(tmp_path):
    """20 blocks of 16 tokens: A (31 tokens) and B (63) hold 6 blocks and open their next ones
    as they decode; C's 200-token prompt needs 13 and is admitted only while the decodes' blocks
    leave room above the watermark, in fast-forward exactly when in stepping."""
    (_, stepped), (_, forwarded), holds = run_both(
        tmp_path, [(0.0, 31, 60), (0.0, 63, 60), (0.6, 200, 10)], blocks=20)
    assert holds, "the arrival cut a run short and it was held"
    assert stepped.requests.equals(forwarded.requests)
    assert stepped.summary["events"] == forwarded.summary["events"]


def test_whole_prompt_steps_pause_the_held_run(tmp_path):
    """Without chunked prefill the step after C's arrival is C's prompt alone, [1.25, 1.5]: A waits
    (its gap then is 0.5 s) and C joins A's run at 1.5 s, counting only its own steps."""
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, [(0.0, 100, 20), (1.1, 300, 5)],
                                                   chunked=False)
    assert holds == [4]
    for result in (stepped, forwarded):
        a, c = result.requests.sort_values("request_id").to_dict("records")
        assert a["max_token_gap_s"] == pytest.approx(2 * STEP_S)
        assert a["finish_s"] == pytest.approx(21 * STEP_S)
        assert c["first_token_s"] == pytest.approx(1.5) and c["max_token_gap_s"] == pytest.approx(STEP_S)
    assert stepped.requests.equals(forwarded.requests)
    assert forwarded.summary["tbt_s"]["mean"] == pytest.approx(stepped.summary["tbt_s"]["mean"], rel=1e-12)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "whole-prompts"])
def test_newcomers_join_the_run_at_different_steps(tmp_path, chunked):
    """Arrivals every 0.6 s join a run that never ends between them; each finishes on its own
    count of steps, and the largest gap of each counts only the steps since it joined."""
    rows = [(0.0, 100, 60)] + [(0.35 + 0.6 * k, 40 + 37 * k, 3 + 4 * k) for k in range(6)]
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, rows, chunked=chunked)
    assert len(holds) >= 5
    assert stepped.requests.equals(forwarded.requests)
    assert forwarded.summary["requests"]["completed"] == len(rows)
    assert forwarded.summary["tbt_s"]["mean"] == pytest.approx(stepped.summary["tbt_s"]["mean"], rel=1e-12)


def test_runs_are_not_held_when_the_admission_reads_the_batch(tmp_path):
    """Conservative admission sums the running requests' reservations: the run is brought up to
    date for the policy instead."""
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, [(0.0, 100, 20), (1.1, 300, 5)],
                                                   admission="conservative")
    assert holds == []
    assert stepped.requests.equals(forwarded.requests)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "whole-prompts"])
def test_a_newcomer_not_yet_in_the_run_is_not_left_out_of_the_next_decode(tmp_path, chunked):
    """C's prompt runs while A's run is held; D arrives meanwhile and is rejected (3,000 tokens
    over the 2,048-token budget without chunking; chunked, it takes two steps). The next decode
    must hold C as well as A, although C has not joined A's run yet."""
    rows = [(0.0, 100, 20), (1.1, 300, 5), (1.3, 3000, 5)]
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, rows, chunked=chunked)
    assert holds
    assert stepped.requests.equals(forwarded.requests)
    c = forwarded.requests.sort_values("request_id").iloc[1]
    assert c["max_token_gap_s"] == pytest.approx(STEP_S), "C decodes in every step after its first token"


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0.0, max_value=10.0), max_size=60), data=st.data())
def test_gap_log_answers_the_largest_gap_since_any_position(gaps, data):
    """``GapMaxima.since(p)`` is the largest gap logged at position p or later, at every moment."""
    log = GapMaxima()
    for count, gap in enumerate(gaps, start=1):
        log.append(gap)
        position = data.draw(st.integers(0, count + 1))
        assert log.since(position) == max(gaps[position:count], default=0.0)
    assert log.count == len(gaps)


class _Counted:
    """The counters ``FinishOrder`` reads, as a request's stand when it joins a run."""

    def __init__(self, output_tokens: int, generated_tokens: int) -> None:
        self.output_tokens, self.generated_tokens = output_tokens, generated_tokens


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_finish_order_takes_out_what_a_scan_of_the_batch_would(data):
    """Requests join a run at rising steps; at each segment's end ``FinishOrder`` gives the requests
    a scan of the batch finds finished (output - generated + join step <= the step), in the order
    they joined (the plan's), and the first finish step of the rest."""
    order, batch, step = FinishOrder(), [], 0
    for _ in range(data.draw(st.integers(1, 8))):
        joining = [_Counted(data.draw(st.integers(1, 30)), data.draw(st.integers(0, 5)))
                   for _ in range(data.draw(st.integers(0, 6)))]
        order.add(joining, step)
        batch += [(request, request.output_tokens - request.generated_tokens + step) for request in joining]
        step += data.draw(st.integers(0, 12))
        expected = [request for request, finish in batch if finish <= step]
        assert order.pop_until(step) == expected
        batch = [(request, finish) for request, finish in batch if finish > step]
        assert order.first == min((finish for _, finish in batch), default=1 << 62)


def test_a_cut_moves_the_wait_once_and_not_after_it_ended():
    """A run's wake moved earlier resumes its process once, at the new time; the old one fires
    with nobody waiting; a wake that fired already is not moved."""
    import simpy

    from simulator.engine.run_driver import _Wake

    env = simpy.Environment()
    resumed = []

    def wait():
        driver.wake = _Wake(env, 5.0)
        yield driver.wake
        resumed.append(env.now)

    class Driver:
        wake = None

    driver = Driver()
    env.process(wait())
    env.run(until=1.0)
    driver.wake = driver.wake.moved_to(1.5)
    env.run()
    assert resumed == [2.5]
    assert driver.wake.moved_to(1.0) is driver.wake, "a fired wake stays"


def test_no_steps_fit_when_a_run_has_none():
    from simulator.engine.fast_forward import steps_that_fit

    assert steps_that_fit([], 10) == 0
    assert steps_that_fit([1, 3, 3, 7], 3) == 3
    assert steps_that_fit([1, 3, 3, 7], 7) == 4


def test_a_second_arrival_is_planned_beside_the_first_newcomer(tmp_path, monkeypatch):
    """C arrives at 1.1 s and prefills in [1.25, 1.5] beside A's held decode; D arrives at 1.3 s,
    during that step. The run stays held: [1.5, 1.75] holds A's decode (the aggregate), C's decode
    (a newcomer beside it) and D's prompt, without the policy's full loop over the batch; then
    C and D join the run. Times equal stepping's."""
    full_loops = full_scheduling_passes(monkeypatch)
    rows = [(0.0, 100, 20), (1.1, 300, 5), (1.3, 200, 4)]
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, rows)
    assert holds == [4]
    forwarding_policy = full_loops[-1][0]  # the second run's (fast-forward's) batch policy
    assert not [t for policy, t in full_loops if policy is forwarding_policy and 1.0 < t < 2.5], \
        "fast-forward planned 1.25-1.75 s around the held run"
    for result in (stepped, forwarded):
        a, c, d = result.requests.sort_values("request_id").to_dict("records")
        assert c["first_token_s"] == pytest.approx(1.5) and c["finish_s"] == pytest.approx(1.5 + 4 * STEP_S)
        assert d["first_scheduled_s"] == pytest.approx(1.5) and d["first_token_s"] == pytest.approx(1.75)
        assert d["finish_s"] == pytest.approx(1.75 + 3 * STEP_S)
        assert a["finish_s"] == pytest.approx(20 * STEP_S) and a["max_token_gap_s"] == pytest.approx(STEP_S)
    assert stepped.requests.equals(forwarded.requests)
    assert stepped.summary["sim"]["steps"] == forwarded.summary["sim"]["steps"]


def test_a_prompt_in_several_chunks_is_planned_around_the_held_run(tmp_path, monkeypatch):
    """C (5,000 tokens) arrives at 1.1 s, with nothing else waiting: its prompt takes three steps
    of the 2,048-token budget beside A's held decode ([1.25, 2.0]: 2,047 + 2,047 + 906 tokens).
    The run stays held through all three, without the policy's full loop over the batch, and C
    joins it at 2.0 s. Times equal stepping's."""
    full_loops = full_scheduling_passes(monkeypatch)
    rows = [(0.0, 100, 20), (1.1, 5000, 5)]
    (_, stepped), (_, forwarded), holds = run_both(tmp_path, rows)
    assert holds == [4]
    forwarding_policy = full_loops[-1][0]
    assert not [t for policy, t in full_loops if policy is forwarding_policy and 1.0 < t < 3.0], \
        "fast-forward planned C's three chunks around the held run"
    for result in (stepped, forwarded):
        a, c = result.requests.sort_values("request_id").to_dict("records")
        assert c["first_scheduled_s"] == pytest.approx(1.25) and c["first_token_s"] == pytest.approx(2.0)
        assert c["finish_s"] == pytest.approx(2.0 + 4 * STEP_S)
        assert a["finish_s"] == pytest.approx(20 * STEP_S) and a["max_token_gap_s"] == pytest.approx(STEP_S)
    assert stepped.requests.equals(forwarded.requests)
    assert stepped.summary["sim"]["steps"] == forwarded.summary["sim"]["steps"]
    assert forwarded.summary["tbt_s"]["mean"] == pytest.approx(stepped.summary["tbt_s"]["mean"], rel=1e-12)


def _assert_entries_are_the_batch(entries, requests, where: str) -> None:
    assert [request for request, _ in entries] == requests, f"{where}: the plan's entries are not the batch"
    assert all(request is member for (request, _), member in zip(entries, requests)), where
    assert all(tokens == 1 for _, tokens in entries), f"{where}: a decode computes one token"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(1, 600), st.sampled_from([1, 2, 3, 5, 8, 13, 21])),
                     min_size=2, max_size=20),
       chunked=st.booleans())
def test_every_decode_plan_lists_its_batch(tmp_path_factory, rows, chunked):
    """A decode run's plan (what ``on_step_end`` hands the policy) and a held run's decodes list
    exactly the batch they stand for, one token each, in its order: the entries of a segment
    and of a held run are carried over from the one before (less its finishers, plus those
    joining) rather than built afresh, so this checks the carrying over, through holds, joins
    and finishes, one at a time in a large batch or many at once (outputs here are few and
    often equal: ``split_finishing`` takes the two apart differently)."""
    seen = {"runs": 0, "held": 0, "largest": 0}

    def checking_commit(self, run, steps):
        _assert_entries_are_the_batch(run.plan.entries, run.requests, "a run's plan")
        seen["runs"] += 1
        seen["largest"] = max(seen["largest"], len(run.requests))
        RunDriver.commit(self, run, steps)

    def checking_held_decodes(self):
        held = RunDriver.held_decodes(self)
        if held is not None:
            _assert_entries_are_the_batch(held.entries, self.held.run.requests, "a held run's decodes")
            seen["held"] += 1
        return held

    with engine_overrides(driver={"commit": checking_commit, "held_decodes": checking_held_decodes}):
        result = scenario(tmp_path_factory.mktemp("entries"), sorted(rows), True, chunked=chunked).run()
    assert result.summary["requests"]["completed"] == len(rows)
    event(f"runs committed: {seen['runs'] > 0}, held decodes planned: {seen['held'] > 0}")
    event(f"a run of more than 8 requests: {seen['largest'] > 8}")
