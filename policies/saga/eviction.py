"""Eviction of retained workflow KV under memory pressure: LRU, and SAGA's retention score.

When a step needs blocks that idle pinned workflows hold, the mechanism asks
the eviction policy for an order (first victim first) and, per victim,
whether to offload it to host DRAM or drop it.

SAGA schedules the workflow as the unit: a workflow that has started keeps
its KV until it ends, and new work waits for memory rather than evicting it
(``protect_started``). A waiting call that starts a new workflow (or belongs
to none) may only evict retained workflows unlikely to call again; a
continuing workflow's call, and running calls that need to grow, may evict
any, lowest score first.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field, PrivateAttr

from simulator.policy_api import EVICTION_POLICIES, Policy, RequestView, WorkflowView


def is_new_work(head: RequestView | None, head_workflow: WorkflowView | None) -> bool:
    """The memory is wanted to start a call that continues no workflow."""
    return head is not None and (head_workflow is None or head_workflow.calls_done == 0)


@EVICTION_POLICIES.register("lru")
class LruEviction(Policy):
    """The workflow pinned longest ago goes first; victims are ``action`` (drop by default)."""

    victim_action: Literal["drop", "offload"] = "drop"

    def order(self, candidates: Sequence[WorkflowView], now_s: float, head: RequestView | None = None,
              head_workflow: WorkflowView | None = None) -> list[WorkflowView]:
        return sorted(candidates, key=lambda w: (w.retained_since_s, w.session_id))

    def action(self, workflow: WorkflowView, now_s: float) -> str:
        return self.victim_action


@EVICTION_POLICIES.register("saga")
class SagaEviction(Policy):
    """Lowest retention score first (the SAGA workflow policy's score; LRU order without one).

    A victim whose reuse is still likely (``p_reuse >= offload_min_reuse``)
    and whose context is worth a PCIe round trip (``min_offload_tokens``) is
    offloaded to host DRAM; others are dropped.
    """

    protect_started: bool = True
    offload_min_reuse: float = Field(default=0.3, ge=0, le=1)
    min_offload_tokens: int = Field(default=2048, ge=0)
    _workflow: object = PrivateAttr(None)

    def bind_workflow(self, policy) -> None:
        self._workflow = policy if hasattr(policy, "score") else None

    def order(self, candidates: Sequence[WorkflowView], now_s: float, head: RequestView | None = None,
              head_workflow: WorkflowView | None = None) -> list[WorkflowView]:
        if self._workflow is None:
            return sorted(candidates, key=lambda w: (w.retained_since_s, w.session_id))
        if self.protect_started and is_new_work(head, head_workflow):
            candidates = [w for w in candidates if self._workflow.p_reuse(w) < self.offload_min_reuse]
        for workflow in candidates:
            workflow.score = self._workflow.score(workflow, now_s)
        return sorted(candidates, key=lambda w: (w.score, w.session_id))

    def action(self, workflow: WorkflowView, now_s: float) -> str:
        likely = self._workflow is None or self._workflow.p_reuse(workflow) >= self.offload_min_reuse
        return "offload" if likely and workflow.context_tokens >= self.min_offload_tokens else "drop"
