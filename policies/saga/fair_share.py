"""Agent Fair Share: continuous batching that admits waiting calls in order of their tenant's service.

SAGA shares each instance among tenants by the service their agents have
received, so that one tenant's flood of workflows cannot starve another's.
Reconstructed as a virtual token counter per tenant (as VTC, Sheng et al.,
OSDI 2024): a tenant's counter grows by ``input_weight`` per prompt token it
has prefilled (charged when the call is admitted, after its prefix-cache hit)
and ``output_weight`` per token it generated (charged when the call
finishes), divided by the tenant's ``weights`` entry (default 1), and a
call's prompt is charged once: re-admitted after a preemption, it recomputes
at the instance's cost, not its tenant's. Waiting calls are admitted lowest
counter first, first come first served within a tenant. As in VTC, a tenant
returning from idle - a call of it waits where none did at the last look -
is lifted to the lowest counter of the tenants still waiting (to the last
admitted tenant's when none is), so idleness earns no credit; a tenant that
stays backlogged keeps its counter, and with it its claim to be served next.
Everything else - step composition, chunked prefill, preemption - is
``vllm``'s.

Workflow-atomic (``continuing_first``): a call that continues a workflow
whose context is cached here goes before any call that would start new
work, so started tasks finish before new ones take their memory; tenants'
counters order the calls within each of the two groups.

Workflow-atomic admission (``whole_prompt``): with chunked prefill a call
is admitted only when KV for its whole prompt fits now, not just its first
chunk, so a long context never starts, grows into memory other calls need
and forces their preemption (vLLM checks the first chunk only).

Counters change only at admissions and finishes, never during a decode-only
stretch, so fast-forward runs stay equal to stepping.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, PrivateAttr

from policies.batching.continuous import ContinuousBatching
from simulator.policy_api import BATCH_POLICIES, RequestView, SchedulerView, StepBuilder


@BATCH_POLICIES.register("afs")
class AgentFairShare(ContinuousBatching):
    """``vllm`` continuous batching with waiting calls ordered by tenant virtual token counters."""

    # Its schedule() updates tenant state (who was backlogged) on every step, also when nothing
    # waits, so the engine must ask it each step rather than continue or start runs on its own.
    steady_through_finishes: ClassVar[bool] = False
    may_plan_around_held: ClassVar[bool] = False  # for the same reason
    weights: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    input_weight: float = Field(default=1.0, ge=0)
    output_weight: float = Field(default=2.0, ge=0)
    continuing_first: bool = True
    whole_prompt: bool = True
    _served: dict[str, float] = PrivateAttr(default_factory=dict)
    _backlogged: frozenset[str] = PrivateAttr(frozenset())  # tenants with calls waiting at the last look
    _last_admitted: str | None = PrivateAttr(None)

    def counter(self, tenant: str) -> float:
        return self._served.get(tenant, 0.0)

    def _charge(self, tenant: str, tokens: float) -> None:
        self._served[tenant] = self.counter(tenant) + tokens / self.weights.get(tenant, 1.0)

    def _key(self, state: SchedulerView):
        """Continuing a workflow whose KV is cached here first, then the lowest tenant counter."""
        def key(request: RequestView) -> tuple[bool, float]:
            continuing = request.session_id is not None and state.cached_prefix_tokens(request) > 0
            return (not continuing and self.continuing_first, self.counter(request.tenant))
        return key

    def next_admission(self, state: SchedulerView) -> RequestView | None:
        """The waiting call this policy tries first (the retention mechanism frees memory for it)."""
        if not state.waiting:
            return None
        # Lift first, as schedule() will: the head must not change between this question and the
        # step with no event in between (fast-forward relies on it).
        self._lift(state)
        return self._next_waiting(state)

    def _lift(self, state: SchedulerView) -> None:
        """VTC's lift, for tenants whose calls wait again after none did (idempotent within a step)."""
        backlogged = frozenset(r.tenant for r in state.waiting)
        returned = backlogged - self._backlogged
        if returned:
            stayed = backlogged & self._backlogged
            floor = (min(self.counter(t) for t in stayed) if stayed else
                     None if self._last_admitted is None else self.counter(self._last_admitted))
            for tenant in returned:
                if floor is not None and self.counter(tenant) < floor:
                    self._served[tenant] = floor
        # Lifting a backlogged tenant again at every step would erase the credit it is owed.
        self._backlogged = backlogged

    def schedule(self, state: SchedulerView, builder: StepBuilder, now_s: float) -> None:
        self._lift(state)
        super().schedule(state, builder, now_s)
        # Who still waits after this step's admissions: a tenant whose last waiting call started
        # here and who sends another before the next look returns from idle.
        self._backlogged = frozenset(r.tenant for r in state.waiting)

    def _next_waiting(self, state: SchedulerView) -> RequestView:
        # One call at a time: each admission raises its tenant's counter before the next choice;
        # min() keeps the first of equals, so FCFS within a tenant.
        return min(state.waiting, key=self._key(state))

    def _next_candidates(self, state: SchedulerView):
        # The order may change while decoding (a cached workflow's call goes first), so any
        # waiting call that fits could be next.
        return state.waiting

    @property
    def _chunks_prompts(self) -> bool:
        return self.chunked_prefill and not self.whole_prompt

    def _may_start(self, request: RequestView, pending: int, state: SchedulerView) -> bool:
        return not self.whole_prompt or state.blocks_to_admit(request, pending) <= state.kv_free_blocks

    def _admitted(self, request: RequestView, pending: int) -> None:
        self._last_admitted = request.tenant
        if request.num_preemptions == 0:  # a re-admission recomputes what was charged the first time
            self._charge(request.tenant, self.input_weight * pending)

    def on_step_end(self, plan, finished, now_s: float) -> None:
        for request in finished:
            self._charge(request.tenant, self.output_weight * request.generated_tokens)
        super().on_step_end(plan, finished, now_s)
