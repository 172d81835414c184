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

from typing import ClassVar

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
    # With nothing waiting, a decode step holds every running request in admission order, so a
    # finish only takes the finished requests out of the next plans (the engine's fast-forward
    # runs go on through finishes; see BatchPolicy in simulator.policy_api).
    steady_through_finishes: ClassVar[bool] = True
    # Whether schedule_around_held may be asked at all (variants that order admissions by the
    # running batch's state, such as fair share, say no).
    may_plan_around_held: ClassVar[bool] = True
    _admission: AdmissionPolicy | None = PrivateAttr(None)
    _around_held: bool = PrivateAttr(False)

    def bind_admission(self, admission: AdmissionPolicy) -> None:
        self._admission = admission
        self._around_held = self.may_plan_around_held and not getattr(admission, "reads_running", True)

    @property
    def plans_around_held(self) -> bool:
        """Whether ``schedule_around_held`` can plan the steps after an arrival cut a decode run
        short: the admission policy decides from the waiting requests and free memory alone."""
        return self._around_held

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

    def schedule_around_held(self, state: SchedulerView, builder: StepBuilder, now_s: float) -> bool:
        """``schedule`` while the running batch is a held decode run (``builder.held``) whose
        requests are not read, perhaps followed by newcomers that started beside it: with chunked
        prefill its decodes go in as one aggregate, then the newcomers' tokens, then waiting
        requests are admitted; without, a step of whole prompts is tried first (the batch waits)
        and the decode step of the aggregate and the newcomers is the fallback, as in
        ``schedule``. False when the step needs more (swapped requests, memory for the decodes
        only by preemption); the engine then brings the batch up to date and calls ``schedule``
        with this builder, which holds nothing more than what was refused or rejected."""
        if not self._around_held or state.swapped:
            return False
        if self.chunked_prefill:
            if not builder.add_held_decodes():
                return False
            self._schedule_beside_held(builder)
            self._admit_waiting(state, builder, chunk=True)
            return True
        if self._admit_waiting(state, builder, chunk=False):
            return True
        if not builder.add_held_decodes():
            return False
        self._schedule_beside_held(builder)
        return True

    def _schedule_beside_held(self, builder: StepBuilder) -> None:
        """The newcomers after a held batch, as ``_schedule_running`` orders them (decodes first
        when chunked); memory cannot refuse them (``add_held_decodes`` made sure), so a refused
        one is skipped, as there."""
        beside = builder.beside_held
        ordered = _decodes_first(beside) if self.chunked_prefill else beside
        refused = builder.add_running(ordered)
        while refused < len(ordered):
            refused = builder.add_running(ordered, refused + 1)

    def steady_decode(self, state: SchedulerView) -> bool:
        """After a decode-only step: will every waiting request that could go next keep being refused?"""
        if not state.waiting:
            return True
        if not getattr(self._admission, "decode_invariant", False):
            return False
        batch = len(state.running)
        if batch >= self.max_num_seqs:
            return True
        if self.chunked_prefill and batch >= self.max_batched_tokens:
            return True
        for request in self._next_candidates(state):
            tokens = request.pending_compute_tokens - state.cached_prefix_tokens(request)
            if self._chunks_prompts:
                tokens = min(tokens, self.max_batched_tokens - batch)
            # Free memory only shrinks during a decode run, so a KV refusal persists.
            if state.blocks_to_admit(request, tokens) <= state.kv_free_blocks:
                return False
        return True

    def on_step_end(self, plan, finished, now_s: float) -> None:
        # Most steps finish nothing, and pydantic's private attributes are slow to read (~2 us).
        admission = self._admission if finished else None
        if admission is not None:
            for request in finished:
                admission.on_finish(request, now_s)

    # ------------------------------------------------------------------ parts
    def _admit_waiting(self, state: SchedulerView, builder: StepBuilder, chunk: bool) -> int:
        """Admit waiting requests in order; stop at the first that cannot start. Returns how many."""
        if not state.waiting:
            return 0
        admitted = 0
        admission = self._admission  # read once: pydantic's private attributes are slow to read
        # vLLM counts running sequences against max_num_seqs, not only this step's.
        while state.waiting and len(state.running) < self.max_num_seqs:
            request = self._next_waiting(state)
            pending = builder.pending_tokens(request)
            if not chunk and pending > self.max_batched_tokens:
                builder.reject(request, f"{pending} tokens to prefill exceed max_batched_tokens "
                                        f"{self.max_batched_tokens} without chunked prefill")
                continue
            tokens = min(pending, builder.tokens_left) if chunk else pending
            if tokens < 1 or not admission.admit(request, state, builder):
                break
            if not self._may_start(request, pending, state) or not builder.add(request, tokens):
                break
            self._admitted(request, pending)
            admitted += 1
        return admitted

    # Hooks for variants that order or gate admissions differently (e.g. fair share).
    def _next_waiting(self, state: SchedulerView) -> RequestView:
        """The waiting request to try next: the head of the queue (FCFS)."""
        return state.waiting[0]

    def _next_candidates(self, state: SchedulerView):
        """Waiting requests that could be tried next while the batch only decodes."""
        return (state.waiting[0],)

    @property
    def _chunks_prompts(self) -> bool:
        """Whether a prompt may start with only a chunk of its tokens."""
        return self.chunked_prefill

    def _may_start(self, request: RequestView, pending: int, state: SchedulerView) -> bool:
        """A last gate before a waiting request is added (``pending``: its tokens after prefix hits)."""
        return True

    def _admitted(self, request: RequestView, pending: int) -> None:
        """Called after a waiting request joined the batch."""

    def _schedule_running(self, state: SchedulerView, builder: StepBuilder) -> bool:
        """Give running requests their tokens (decodes first); preempt on KV exhaustion."""
        preempted = False
        ordered = _decodes_first(state.running) if self.chunked_prefill else list(state.running)
        # add_running adds requests in order until one is refused; only that one needs more.
        refused = builder.add_running(ordered)
        while refused < len(ordered):
            request = ordered[refused]
            tokens = min(builder.pending_tokens(request), builder.tokens_left)
            while builder.check(request, tokens) is Refusal.KV_MEMORY:
                victim = _latest_not_in_step(state, builder)
                builder.preempt(victim)
                preempted = True
                if victim is request:
                    break
            if request.status is RequestStatus.RUNNING:
                builder.add(request, tokens)
            refused = builder.add_running(ordered, refused + 1)
        return preempted

    def _swap_in(self, state: SchedulerView, builder: StepBuilder) -> None:
        while state.swapped and len(state.running) < self.max_num_seqs:
            request = state.swapped[0]
            if not builder.swap_in(request):
                return
            builder.add(request, min(builder.pending_tokens(request), builder.tokens_left))


def _decodes_first(running: list[RequestView]) -> list[RequestView]:
    """Running requests sorted by (still prefilling, admission order): decodes first.

    ``running`` is in admission order already, so a stable partition gives that
    order without a sort (this runs every step, over every running request).
    """
    decodes, prefills = [], []
    for request in running:
        # pending_compute_tokens > 1, spelled out.
        if request.prompt_tokens + request.generated_tokens - request.computed_tokens > 1:
            prefills.append(request)
        else:
            decodes.append(request)
    return decodes + prefills


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
