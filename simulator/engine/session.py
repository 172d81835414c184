"""Sessions: chains of LLM calls released one after another (agents, chats, closed-loop users).

A ``SessionSpec`` describes a chain of calls. Call ``k + 1`` is released only
when call ``k`` has ended and ``wait_before_s`` of call ``k + 1`` (a tool's
latency, a user's think time) has passed. When ``carries_context`` is true
each call's prompt is the whole context so far - every earlier prompt and
output plus the call's new tokens - and its leading blocks share a prefix
hash with the previous call, so a KV cache that kept them skips their
prefill. Closed-loop clients are sessions whose calls are independent
(``carries_context: false``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One LLM call of a session.

    Attributes:
        new_prompt_tokens: tokens appended before this call (the whole prompt for the first
            call, or for every call when the session does not carry context).
        output_tokens: true output length of the call.
        wait_before_s: delay between the previous call's end and this call's release
            (tool latency or think time); ignored for the first call.
        kind: a label for the step (e.g. "plan", "edit"), for policies that learn workflows.
    """

    new_prompt_tokens: int
    output_tokens: int
    wait_before_s: float = 0.0
    kind: str = "call"


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """A chain of calls that starts at ``arrival_s``.

    Attributes:
        session_id: unique id; also seeds the prefix hashes of a carried context.
        arrival_s: release time of the first call.
        calls: the calls in order.
        carries_context: prompts extend a shared, growing context (agents, multi-turn chat).
        kind: "workflow" (agent task), "conversation" or "client" (closed-loop user).
        agent_type, tenant, priority, slo_class: labels for policies and reports.
        resubmit_on_reject: a rejected call is sent again (closed-loop clients re-submit).
        max_output_tokens: the users' cap on each call's output (the workload's
            ``max_output_tokens``), which admission policies see; None: each call's true length.
    """

    session_id: str
    arrival_s: float
    calls: tuple[CallSpec, ...]
    carries_context: bool = True
    kind: str = "workflow"
    agent_type: str = ""
    tenant: str = "default"
    priority: int = 0
    slo_class: str = "default"
    resubmit_on_reject: bool = False
    max_output_tokens: int | None = None
