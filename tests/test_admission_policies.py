"""The admission policies' decisions on hand-built batches (no simulation).

A fake instance state stands in for ``SchedulerView`` and fresh ``object()``s
for step builders: the policies only compare builders by identity (a new one
is a new step).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from policies.admission.aggressive import AggressiveAdmission
from policies.admission.conservative import ConservativeAdmission
from policies.admission.oracle import OracleAdmission
from policies.admission.past_future import PastFutureAdmission
from simulator.policy_api import ADMISSION_POLICIES, PolicyContext, RequestStatus


def request(prompt: int, output: int, generated: int = 0, cap: int | None = None, **extra) -> SimpleNamespace:
    fields = dict(prompt_tokens=prompt, output_tokens=output, generated_tokens=generated,
                  max_output_tokens=cap if cap is not None else output, known_tokens=prompt + generated,
                  status=RequestStatus.RUNNING if generated else RequestStatus.WAITING,
                  arrival_s=0.0, first_token_s=None, last_token_s=None, computed_tokens=0)
    return SimpleNamespace(**{**fields, **extra})


def state(running=(), capacity: int = 1000, waiting=(), now: float = 0.0) -> SimpleNamespace:
    """An instance of ``capacity`` KV tokens in blocks of one token (no rounding slack)."""
    return SimpleNamespace(running=list(running), swapped=[], waiting=list(waiting), kv_total_blocks=capacity,
                           block_size=1, now_s=now)


def test_the_four_policies_are_registered_and_only_aggressive_lets_the_engine_skip_steps() -> None:
    for name in ("aggressive", "conservative", "past_future", "oracle"):
        assert name in ADMISSION_POLICIES.names()
    assert AggressiveAdmission().decode_invariant
    assert not AggressiveAdmission(abort_ttft_s=8).decode_invariant  # waiting can end in an abort
    for cls in (ConservativeAdmission, PastFutureAdmission, OracleAdmission):
        assert cls.decode_invariant is False


def test_oracle_keeps_admitted_candidates_in_the_scenario_for_the_rest_of_the_step() -> None:
    oracle = OracleAdmission(reserve=0.0)
    now = state(running=[request(50, 300, generated=50)])   # holds 100, 250 to go
    step = object()
    # (200, 400) + (100, 250): k=1 600, k=2 2*250 + 300 = 800 < 1000.
    assert oracle.admit(request(200, 400), now, step)
    assert oracle.admit(request(100, 100), now, step)       # k=3: 3*100 + 400 = 700; peak 800
    assert oracle.admit(request(300, 50), now, step)        # k=4: 4*50 + 700 = 900
    # (100, 300) would make k=3: 3*250 + 400 = 1150 with the three admitted in this step...
    assert not oracle.admit(request(100, 300), now, step)
    # ...but alone with the running request it fits (k=2: 2*250 + 200 = 700): a new step starts afresh.
    assert oracle.admit(request(100, 300), now, object())


def test_reserve_and_the_strict_inequality() -> None:
    running = [request(50, 300, generated=50)]
    # Peak with (200, 400): 800.
    assert not OracleAdmission(reserve=0.2).admit(request(200, 400), state(running), object())   # 800 < 800 fails
    assert OracleAdmission(reserve=0.19).admit(request(200, 400), state(running), object())


def test_max_running_counts_the_batch_and_this_steps_admissions() -> None:
    oracle = OracleAdmission(reserve=0.0, max_running=2)
    now, step = state(running=[request(1, 2, generated=1)]), object()
    assert oracle.admit(request(1, 1), now, step)
    assert not oracle.admit(request(1, 1), now, step)


def test_conservative_reserves_prompt_plus_cap_for_every_request() -> None:
    conservative = ConservativeAdmission(max_output_tokens=300)
    now, step = state(running=[request(100, 20, generated=10)]), object()   # reserves 100 + 300
    assert conservative.admit(request(200, 5), now, step)                   # 400 + 500 = 900 <= 1000
    assert not conservative.admit(request(50, 5), now, step)                # 900 + 350 > 1000
    reserved = ConservativeAdmission(max_output_tokens=300, reserve=0.2)
    assert reserved.admit(request(100, 5), now, object())                   # 400 + 400 <= 800
    assert not reserved.admit(request(101, 5), now, object())


def test_conservative_rounds_reservations_up_to_whole_blocks() -> None:
    blocks = state(running=[request(10, 5, generated=1)], capacity=3)
    blocks.block_size = 16                                                   # 48 tokens
    # 10 + 5 -> one block; 20 + 5 -> two blocks; 33 + 5 -> three: 1 + 2 fits, 1 + 3 does not.
    assert ConservativeAdmission().admit(request(20, 5), blocks, object())
    assert not ConservativeAdmission().admit(request(33, 5), blocks, object())


def test_past_future_samples_from_history_and_learns_from_completions() -> None:
    policy = PastFutureAdmission(window=4, initial_output_tokens=900, initial_copies=4, reserve=0.0)
    policy.setup(PolicyContext(np.random.default_rng(0), 1, 16, 1.0, 100_000, 0))
    # The seeded history says every output is 900 tokens: a 200-token prompt peaks at 1100.
    assert not policy.admit(request(200, 10, cap=4096), state(), object())
    for _ in range(4):
        policy.on_finish(request(1, 10, generated=10), 0.0)
    # Now outputs are 10 tokens: 200 + 10 fits, and every draw is clamped to the cap.
    assert policy.admit(request(200, 10, cap=4096), state(), object())
    assert policy.admit(request(985, 10, cap=5), state(), object())          # 985 + min(10, 5) < 1000


def test_past_future_conditions_running_requests_on_what_they_generated() -> None:
    policy = PastFutureAdmission(window=8, initial_output_tokens=100, initial_copies=8, reserve=0.0)
    policy.setup(PolicyContext(np.random.default_rng(0), 1, 16, 1.0, 100_000, 0))
    # A running request past every history value (150 > 100) ends uniformly between 150 and its
    # cap 700. It holds 600 now; with a (100, 1) candidate the peak is max(600 + rem, 2 + 700), so
    # the candidate fits iff rem < 400: probability 400/550 per scenario, and all K = 5 must agree.
    running = [request(450, 700, generated=150, cap=700)]
    admitted = [policy.admit(request(100, 1, cap=1), state(running), object()) for _ in range(400)]
    assert abs(np.mean(admitted) - (400 / 550) ** 5) < 0.06
    # Unconditioned, the history (all 100 < 150) would say the request is done: always admit.


@pytest.mark.parametrize("cls", [AggressiveAdmission, ConservativeAdmission, PastFutureAdmission, OracleAdmission])
def test_sla_abort_rejects_waiting_requests_that_broke_their_sla(cls) -> None:
    policy = cls(abort_ttft_s=8, abort_max_tpot_s=1.5)
    fresh_late = request(10, 10, arrival_s=0.0)
    evicted_late = request(10, 10, generated=3, status=RequestStatus.WAITING, first_token_s=1.0, last_token_s=7.0)
    fresh_ok = request(10, 10, arrival_s=5.0)
    now = state(waiting=[evicted_late, fresh_late, fresh_ok], now=10.0)
    rejected = []
    builder = SimpleNamespace(reject=lambda r, why: (rejected.append((r, why)), setattr(r, "status", RequestStatus.REJECTED)))
    assert not policy.admit(evicted_late, now, builder)                      # the head itself was aborted
    assert [r for r, _ in rejected] == [evicted_late, fresh_late]
    assert "TTFT SLA 8 s" in rejected[1][1] and "max-TPOT SLA 1.5 s" in rejected[0][1]
