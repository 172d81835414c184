"""Continuous batching as vLLM (v0 scheduler semantics) and Sarathi-Serve do it.

One FCFS loop serves both, differing only in parameters:

* ``chunked_prefill: false`` (vLLM's default): a step is either a prefill step
  (whole prompts, FCFS, while they fit the token budget, the sequence cap and
  KV above the watermark) or, when no prompt can start, a decode step over
  the running batch. Swapped requests come back only in steps that preempt
  nothing, and block new prefills while they wait.
* ``chunked_prefill: true`` (Sarathi-Serve, vLLM's chunked prefill): every
  step first gives each running decode one token, then continues partial
  prefills, then chunks new prompts into what is left of the token budget.

When a running request needs a KV block and none is free, the most recently
admitted running request that is not yet in this step is preempted (by swap
when the instance has a host tier with room, else by recompute); if there is
none, the request itself is.
"""

from __future__ import annotations

from pydantic import Field, PrivateAttr

from simulator.policy_api import (BATCH_POLICIES, AdmissionPolicy, Policy, Refusal, RequestStatus, RequestView,
                                  SchedulerView, StepBuilder, StepLimits)


@BATCH_POLICIES.register("vllm")
class ContinuousBatching(Policy):
    """FCFS continuous batching with preempt-latest on KV exhaustion.

    Attributes:
        max_num_seqs: most sequences in one step.
        max_batched_tokens: most new tokens in one step (the token budget).
        chunked_prefill: mix decodes and prompt chunks in one step (Sarathi).
    """

    max_num_seqs: int = Field(default=256, gt=0)
    max_batched_tokens: int = Field(default=8192, gt=0)
    chunked_prefill: bool = False
    _admission: AdmissionPolicy | None = PrivateAttr(None)

    def bind_admission(self, admission: AdmissionPolicy) -> None:
        self._admission = admission

    def step_limits(self) -> StepLimits:
        return StepLimits(self.max_batched_tokens, self.max_num_seqs)

    def schedule(self, state: SchedulerView, builder: StepBuilder, now_s: float) -> None:
        if self.chunked_prefill:
            preempted = self._schedule_running(state, builder)
            if not preempted:
                self._swap_in(state, builder)
            if not state.swapped:
                self._admit_waiting(state, builder, chunk=True)
            return
        if not state.swapped and self._admit_waiting(state, builder, chunk=False):
            return
        if not self._schedule_running(state, builder):
            self._swap_in(state, builder)

    def steady_decode(self, state: SchedulerView) -> bool:
        """After a decode-only step: will the waiting head keep being refused while decoding?"""
        if not state.waiting:
            return True
        if not getattr(self._admission, "decode_invariant", False):
            return False
        batch = len(state.running)
        if batch >= self.max_num_seqs:
            return True
        head = state.waiting[0]
        tokens = head.pending_compute_tokens
        if self.chunked_prefill:
            if batch >= self.max_batched_tokens:
                return True
            tokens = min(tokens, self.max_batched_tokens - batch)
        # Free memory only shrinks during a decode run, so a KV refusal persists.
        return state.blocks_to_admit(head, tokens) > state.kv_free_blocks

    def on_step_end(self, plan, finished, now_s: float) -> None:
        if self._admission is not None:
            for request in finished:
                self._admission.on_finish(request, now_s)

    # ------------------------------------------------------------------ parts
    def _admit_waiting(self, state: SchedulerView, builder: StepBuilder, chunk: bool) -> int:
        """Admit waiting requests FCFS; stop at the first that cannot start. Returns how many."""
        admitted = 0
        # vLLM counts running sequences against max_num_seqs, not only this step's.
        while state.waiting and len(state.running) < self.max_num_seqs:
            request = state.waiting[0]
            pending = builder.pending_tokens(request)
            if not chunk and pending > self.max_batched_tokens:
                builder.reject(request, f"{pending} tokens to prefill exceed max_batched_tokens "
                                        f"{self.max_batched_tokens} without chunked prefill")
                continue
            tokens = min(pending, builder.tokens_left) if chunk else pending
            if tokens < 1 or not self._admission.admit(request, state, builder):
                break
            if not builder.add(request, tokens):
                break
            admitted += 1
        return admitted

    def _schedule_running(self, state: SchedulerView, builder: StepBuilder) -> bool:
        """Give running requests their tokens (decodes first); preempt on KV exhaustion."""
        preempted = False
        ordered = sorted(state.running, key=_decode_first) if self.chunked_prefill else list(state.running)
        for request in ordered:
            if request.status is not RequestStatus.RUNNING:
                continue  # preempted earlier in this step
            tokens = min(builder.pending_tokens(request), builder.tokens_left)
            if tokens < 1 or builder.add(request, tokens):
                continue
            while builder.check(request, tokens) is Refusal.KV_MEMORY:
                victim = _latest_not_in_step(state, builder)
                builder.preempt(victim)
                preempted = True
                if victim is request:
                    break
            if request.status is RequestStatus.RUNNING:
                builder.add(request, tokens)
        return preempted

    def _swap_in(self, state: SchedulerView, builder: StepBuilder) -> None:
        while state.swapped and len(state.running) < self.max_num_seqs:
            request = state.swapped[0]
            if not builder.swap_in(request):
                return
            builder.add(request, min(builder.pending_tokens(request), builder.tokens_left))


def _decode_first(request: RequestView) -> tuple[int, int]:
    return (request.pending_compute_tokens > 1, request.admitted_seq)


def _latest_not_in_step(state: SchedulerView, builder: StepBuilder) -> RequestView:
    for request in reversed(state.running):
        if request.status is RequestStatus.RUNNING and not builder.in_batch(request):
            return request
    raise AssertionError("the request being scheduled is itself running and not in the step")


@BATCH_POLICIES.register("sarathi")
class SarathiServe(ContinuousBatching):
    """Sarathi-Serve: chunked prefill with stall-free batching and a small token budget.

    The paper evaluates budgets of 512 (strict TBT SLO) and 2048 (relaxed).
    """

    max_batched_tokens: int = Field(default=512, gt=0)
    chunked_prefill: bool = True
