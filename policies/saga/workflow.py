"""Workflow policies: SAGA's retention and placement, plain prefix caching, and a fixed time-to-live.

``saga`` (reconstructed from the paper's description): when a call ends it
asks the agent type's learned execution graph (``policies.saga.aeg``) how
likely another call is and how long the tool will take. It pins the KV when
the reuse probability is at least ``min_reuse_probability``, for the
``ttl_quantile`` quantile of the tool latency times ``ttl_margin`` (bounded by
``max_ttl_s``); when the time runs out without a call it offloads contexts of
at least ``min_offload_tokens`` to host DRAM and releases smaller ones into
the LRU cache. A call whose context is in host DRAM waits for GPU memory to
load it into (idle pins give way to it), rather than recompute: giving up
would not start the call sooner, since recomputing needs the same memory.
It leaves when work stealing would send it elsewhere, and gives up only
after ``reload_patience_s``, a bound for an instance whose memory stays held.
The retention score the eviction policy orders by is

    score = p_reuse * recompute_cost(context) / (blocks * expected_remaining_wait_s)

(expected recompute work saved per block-second of memory held), with
``recompute_cost(c) = c * (1 + c / attention_knee_tokens)`` for the
quadratic attention part of a long prefill.

Placement: a workflow's calls go where its KV is (session affinity). A new
workflow goes to the least loaded instance: the least KV in use plus pending
tokens, as a fraction of its KV (memory, not compute, limits how many agents
an instance serves). With ``stealing``, a call leaves an overloaded home for
that instance when the home's backlog of pending tokens exceeds the other's
by more than ``steal_factor * context`` tokens plus ``steal_min_tokens`` -
the work it would recompute there - so an idle instance takes work that
waits behind a busy one (work stealing at dispatch; the KV is recomputed at
the new home).
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field, PrivateAttr

from policies.saga.aeg import GraphBook
from simulator.policy_api import WORKFLOW_POLICIES, InstanceView, Policy, RequestView, WorkflowView


@WORKFLOW_POLICIES.register("prefix_cache")
class PrefixCacheOnly(Policy):
    """vLLM: never pin; a finished call's blocks go to the LRU prefix cache. Placement is the router's."""

    def on_call_end(self, workflow: WorkflowView, now_s: float) -> float | None:
        return None

    def on_expire(self, workflow: WorkflowView, now_s: float) -> str:
        return "release"


@WORKFLOW_POLICIES.register("fixed_ttl")
class FixedTtl(Policy):
    """Pin every finished call's blocks for ``ttl_s``; then ``on_expire`` (release, drop or offload)."""

    ttl_s: float = Field(default=5.0, ge=0)
    expire_action: Literal["release", "drop", "offload"] = "release"

    def on_call_end(self, workflow: WorkflowView, now_s: float) -> float | None:
        return self.ttl_s

    def on_expire(self, workflow: WorkflowView, now_s: float) -> str:
        return self.expire_action


@WORKFLOW_POLICIES.register("saga")
class SagaWorkflow(Policy):
    """SAGA: retention by learned reuse prediction, session affinity, work stealing (see module docstring)."""

    retention: bool = True
    stealing: bool = True
    min_reuse_probability: float = Field(default=0.3, ge=0, le=1)
    ttl_quantile: float = Field(default=0.95, gt=0, le=1)
    ttl_margin: float = Field(default=1.5, ge=1)
    max_ttl_s: float = Field(default=60.0, gt=0)
    default_wait_s: float = Field(default=2.0, gt=0)
    min_offload_tokens: int = Field(default=2048, ge=0)
    attention_knee_tokens: int = Field(default=16384, gt=0)
    steal_factor: float = Field(default=4.0, ge=0)
    steal_min_tokens: int = Field(default=4096, ge=0)
    window: int = Field(default=512, gt=0)
    reload_patience_s: float = Field(default=30.0, ge=0)
    _graphs: GraphBook = PrivateAttr(default=None)
    _block_size: int = PrivateAttr(16)

    def setup(self, context) -> None:
        self._graphs = GraphBook(self.window)
        self._block_size = context.block_size

    # --------------------------------------------------------------- learning
    def on_call_released(self, workflow: WorkflowView, new_tokens: int, wait_s: float, now_s: float) -> None:
        if workflow.calls_released > 1:
            previous = workflow.spec.calls[workflow.calls_released - 2].kind
            self._graphs[workflow.agent_type].observe_call(previous, workflow.last_kind, wait_s, new_tokens)

    def on_session_end(self, workflow: WorkflowView, now_s: float) -> None:
        if workflow.calls_done:
            self._graphs[workflow.agent_type].observe_end(workflow.last_kind, workflow.calls_done)

    # ------------------------------------------------------------- prediction
    def p_reuse(self, workflow: WorkflowView) -> float:
        return self._graphs[workflow.agent_type].p_continue(workflow.calls_done, workflow.last_kind)

    def score(self, workflow: WorkflowView, now_s: float) -> float:
        """Expected recompute work saved per block-second of GPU memory held (higher: keep)."""
        graph = self._graphs[workflow.agent_type]
        remaining = graph.expected_remaining_wait_s(workflow.last_kind, now_s - workflow.last_end_s,
                                                    self.default_wait_s)
        context = workflow.context_tokens
        cost = context * (1 + context / self.attention_knee_tokens)
        blocks = max(1, workflow.retained_blocks or context // self._block_size)
        return self.p_reuse(workflow) * cost / (blocks * max(remaining, 1e-3))

    # -------------------------------------------------------------- retention
    def on_call_end(self, workflow: WorkflowView, now_s: float) -> float | None:
        if not self.retention or self.p_reuse(workflow) < self.min_reuse_probability:
            return None
        wait = self._graphs[workflow.agent_type].wait_quantile(workflow.last_kind, self.ttl_quantile,
                                                               self.default_wait_s)
        return min(self.max_ttl_s, wait * self.ttl_margin)

    def on_expire(self, workflow: WorkflowView, now_s: float) -> str:
        return "offload" if workflow.context_tokens >= self.min_offload_tokens else "release"

    # -------------------------------------------------------------- placement
    def place(self, request: RequestView | None, workflow: WorkflowView, instances: Sequence[InstanceView],
              now_s: float) -> int | None:
        """Home, or the least loaded instance for a new workflow or a call stolen from an overloaded home.

        (Also asked with no ``request`` before an offloaded context is reloaded, which is wasted
        if the call is then stolen.)
        """
        least = min(instances, key=lambda i: (_pressure(i), i.id))
        home = next((i for i in instances if i.id == workflow.instance_id), None)
        if home is None:
            return least.id
        if self.stealing and home.pending_tokens - least.pending_tokens > (
                self.steal_factor * workflow.context_tokens + self.steal_min_tokens):
            return least.id
        return home.id


def _pressure(instance: InstanceView) -> float:
    """KV in use plus the work queued there, as a fraction of the instance's KV (memory binds agents)."""
    return (instance.kv_used_blocks + instance.pending_tokens / instance.block_size) / instance.kv_total_blocks
