"""Session generators: multi-turn conversations, agent tasks (fitted SWE-agent profile), closed-loop clients."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator.engine.session import SessionSpec
from workloads.sessions.agent_profiles import SWE_AGENT_SUMMARY
from workload_helpers import run, shared

LENGTHS = {"prompt": {"dist": "fixed", "tokens": 50}, "output": {"dist": "fixed", "tokens": 20}}
POISSON = {"process": "poisson", "rate_per_s": 2.0}


def conversation(**overrides) -> dict:
    return {"sessions": {"kind": "conversation", "arrivals": POISSON, "turns": {"dist": "geometric", "mean": 4},
                         "lengths": LENGTHS, "think_time": {"dist": "exponential", "mean_s": 3.0},
                         "system_prompt_tokens": 100, "num_sessions": 4000, **overrides}}


def agent(profile: str, sessions: int = 600) -> list[SessionSpec]:
    return run({"sessions": {"kind": "agent", "profile": profile, "arrivals": POISSON, "num_sessions": sessions}})


def prompts_of(session: SessionSpec) -> list[int]:
    """Each call's whole prompt, as the engine computes it for a session that carries its context."""
    prompts, context = [], 0
    for call in session.calls:
        context += call.new_prompt_tokens
        prompts.append(context)
        context += call.output_tokens
    return prompts


def test_conversations_have_geometric_turns_think_times_and_a_system_prompt():
    sessions = run(conversation())
    turns = np.array([len(s.calls) for s in sessions])
    waits = np.array([c.wait_before_s for s in sessions for c in s.calls[1:]])
    assert len(sessions) == 4000 and turns.min() >= 1
    # Geometric with mean 4: sd about 3.5, so the mean of 4000 is within 0.06 (1 se) of 4.
    assert turns.mean() == pytest.approx(4.0, abs=0.3)
    assert waits.mean() == pytest.approx(3.0, rel=0.05)
    assert {s.calls[0].new_prompt_tokens for s in sessions} == {150}
    assert {c.new_prompt_tokens for s in sessions for c in s.calls[1:]} == {50}
    assert all(s.carries_context and s.kind == "conversation" and s.calls[0].wait_before_s == 0 for s in sessions)
    assert len({s.session_id for s in sessions}) == 4000
    arrival = np.array([s.arrival_s for s in sessions])
    assert np.all(np.diff(arrival) >= 0) and 4000 / arrival[-1] == pytest.approx(2.0, rel=0.08)


def test_conversation_turns_extend_a_shared_prefix():
    session = run(conversation(turns={"dist": "fixed", "value": 3}, num_sessions=1))[0]
    assert prompts_of(session) == [150, 150 + 20 + 50, 150 + 20 + 50 + 20 + 50]


def test_sessions_stop_at_the_duration():
    sessions = run({**conversation(num_sessions=None), "duration_s": 100.0})
    assert max(s.arrival_s for s in sessions) < 100.0 and len(sessions) == pytest.approx(200, rel=0.25)


def test_swe_agent_constants_match_the_shared_summary():
    summary = json.loads(shared("agent_traces/swe_agent_summary.json").read_text())
    assert {key: summary[key] for key in SWE_AGENT_SUMMARY} == SWE_AGENT_SUMMARY


@pytest.mark.parametrize(("measure", "key", "tolerance"), [
    (lambda ss: [len(s.calls) for s in ss], "calls_per_task", 0.1),
    (lambda ss: [s.calls[0].new_prompt_tokens for s in ss], "first_call_input_tokens", 0.1),
    (lambda ss: [c.output_tokens for s in ss for c in s.calls], "output_tokens_per_call", 0.1),
    (lambda ss: [c.wait_before_s for s in ss for c in s.calls[1:]], "tool_latency_s", 0.1),
    (lambda ss: [p for s in ss for p in prompts_of(s)], "input_tokens_per_call", 0.25),
])
def test_swe_agent_profile_reproduces_the_measured_quantiles(measure, key, tolerance):
    values = np.array(measure(agent("swe-agent")))
    for percent in (25, 50, 75):
        assert np.percentile(values, percent) == pytest.approx(SWE_AGENT_SUMMARY[key][f"p{percent}"],
                                                               rel=tolerance), (key, percent)


def test_agent_tasks_are_workflows_with_tool_waits():
    sessions = agent("browsing-agent", 200)
    assert all(s.kind == "workflow" and s.carries_context and s.agent_type == "browsing-agent" for s in sessions)
    assert all(c.kind == "tool_result" and c.wait_before_s > 0 for s in sessions for c in s.calls[1:])
    assert {s.calls[0].kind for s in sessions} == {"task"}
    assert np.median([len(s.calls) for s in sessions]) == pytest.approx(10, abs=2)


def test_agent_profile_fields_can_be_replaced():
    sessions = run({"sessions": {"kind": "agent", "profile": "swe-agent", "arrivals": POISSON, "num_sessions": 20,
                                 "calls_per_task": {"dist": "fixed", "value": 3},
                                 "tool_latency_s": {"dist": "fixed", "seconds": 2.0}}})
    assert {len(s.calls) for s in sessions} == {3}
    assert {c.wait_before_s for s in sessions for c in s.calls[1:]} == {2.0}


def test_closed_loop_clients():
    clients = run({"closed_loop": {"clients": 8, "requests_per_client": 5, "ramp_s": 4.0, "lengths": LENGTHS,
                                   "think_time": {"dist": "uniform", "min_s": 1, "max_s": 2}}})
    assert len(clients) == 8 and [c.arrival_s for c in clients] == [0.5 * i for i in range(8)]
    assert all(c.kind == "client" and not c.carries_context and c.resubmit_on_reject for c in clients)
    assert all(len(c.calls) == 5 and all(1 <= call.wait_before_s <= 2 for call in c.calls[1:]) for c in clients)


def test_closed_loop_shares_num_requests_among_clients():
    clients = run({"closed_loop": {"clients": 4, "lengths": LENGTHS}, "num_requests": 10})
    assert [len(c.calls) for c in clients] == [3, 3, 2, 2]
    assert len(run({"closed_loop": {"clients": 4, "lengths": LENGTHS}, "num_requests": 2})) == 2
