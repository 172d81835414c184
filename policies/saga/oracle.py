"""The Belady oracle for workflow KV retention: it sees each workflow's true future.

``belady`` (workflow policy) places calls exactly as ``saga`` does but
retains a finished call's KV if and only if the workflow really makes
another call, for exactly as long as the tool really takes (plus
``slack_s``). ``belady`` (eviction policy) evicts, under pressure, the
retained workflow whose next call comes furthest in the future (Belady's
MIN), offloading it when its context is worth a PCIe round trip. Together
they bound what any predictor of reuse can achieve with the same memory and
placement; the SAGA reproduction compares recomputed tokens against it.
"""

from __future__ import annotations

import math
from typing import Sequence

from pydantic import Field

from policies.saga.eviction import is_new_work
from policies.saga.workflow import SagaWorkflow
from simulator.policy_api import EVICTION_POLICIES, WORKFLOW_POLICIES, Policy, RequestView, WorkflowView


def next_use_s(workflow: WorkflowView, now_s: float) -> float:
    """When the workflow's KV is next used: now if a call of it waits, else its next call's release.

    (``next_wait_s`` already describes the call after one that has been released.)
    """
    if workflow.active is not None or workflow.releasing:
        return now_s
    wait = workflow.next_wait_s
    return math.inf if wait is None else workflow.last_end_s + wait


@WORKFLOW_POLICIES.register("belady")
class BeladyWorkflow(SagaWorkflow):
    """SAGA's placement with retention decided from the true future (an upper bound, not a policy)."""

    slack_s: float = Field(default=1.0, ge=0)

    def p_reuse(self, workflow: WorkflowView) -> float:
        return 0.0 if workflow.next_wait_s is None else 1.0

    def on_call_end(self, workflow: WorkflowView, now_s: float) -> float | None:
        wait = workflow.next_wait_s
        if not self.retention or wait is None:
            return None
        return wait + self.slack_s

    def on_expire(self, workflow: WorkflowView, now_s: float) -> str:
        return "release"


@EVICTION_POLICIES.register("belady")
class BeladyEviction(Policy):
    """Evict the workflow whose next call is furthest away; offload contexts of ``min_offload_tokens``.

    As ``saga`` with ``protect_started``, new work may only evict workflows that make no further call.
    """

    protect_started: bool = True
    min_offload_tokens: int = Field(default=2048, ge=0)

    def order(self, candidates: Sequence[WorkflowView], now_s: float, head: RequestView | None = None,
              head_workflow: WorkflowView | None = None) -> list[WorkflowView]:
        if self.protect_started and is_new_work(head, head_workflow):
            candidates = [w for w in candidates if w.next_wait_s is None and w.active is None]
        return sorted(candidates, key=lambda w: (-next_use_s(w, now_s), w.session_id))

    def action(self, workflow: WorkflowView, now_s: float) -> str:
        if workflow.next_wait_s is not None and workflow.context_tokens >= self.min_offload_tokens:
            return "offload"
        return "drop"
