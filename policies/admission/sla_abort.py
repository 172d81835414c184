"""What every admission policy here shares: the users' output cap and the server's SLA aborts.

LightLLM's server, which the Past-Future paper measures, aborts a request as
soon as it can no longer meet its SLA, and the paper's closed-loop clients
re-send what was aborted. Admission is where a waiting request is looked at,
so the abort lives here: each step, before the first admission decision,
every waiting request that has already broken its SLA is rejected with the
reason - one that has waited longer than ``abort_ttft_s`` without a first
token, or one evicted mid-decode (waiting to be recomputed) whose gap since
its last token exceeds ``abort_max_tpot_s``. Requests already running are
never aborted (the policy API cannot stop them). Both are off by default.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PrivateAttr

from simulator.policy_api import Policy, RequestStatus, RequestView, SchedulerView, StepBuilder


class SlaAdmission(Policy):
    """Base of the admission policies: SLA aborts, the assumed output cap, and the decision hook.

    Attributes:
        abort_ttft_s: reject a waiting request that has waited this long without a first token.
        abort_max_tpot_s: reject an evicted waiting request whose current inter-token gap exceeds this.
        max_output_tokens: the users' output cap the policy assumes for every request
            (LightLLM's ``max_new_tokens``); None uses each request's own ``max_output_tokens``.
            Set it where the workload does not carry the cap (closed-loop clients today).
    """

    # Whether fits() reads the running batch (its requests' counters); False lets the engine
    # plan around a held decode run (simulator.engine.run_driver) without bringing it up to date.
    reads_running: ClassVar[bool] = True
    abort_ttft_s: float | None = Field(default=None, gt=0)
    abort_max_tpot_s: float | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    _swept: StepBuilder | None = PrivateAttr(None)

    def admit(self, request: RequestView, state: SchedulerView, builder: StepBuilder) -> bool:
        if self._sla_aborts_on and builder is not self._swept:
            self._swept = builder
            self._abort_hopeless(state, builder)
            if request.status is RequestStatus.REJECTED:
                return False  # the head itself was aborted; the next head is asked next step
        return self.fits(request, state, builder)

    def fits(self, request: RequestView, state: SchedulerView, builder: StepBuilder) -> bool:
        """Whether ``request`` may join the batch this step (subclasses decide)."""
        return True

    def on_finish(self, request: RequestView, now_s: float) -> None:
        """Called for every request that completes on this instance; default keeps nothing."""

    def cap(self, request: RequestView) -> int:
        """The output cap assumed for ``request``."""
        return self.max_output_tokens if self.max_output_tokens is not None else request.max_output_tokens

    @property
    def _sla_aborts_on(self) -> bool:
        return self.abort_ttft_s is not None or self.abort_max_tpot_s is not None

    def _abort_hopeless(self, state: SchedulerView, builder: StepBuilder) -> None:
        """Reject every waiting request that has broken its SLA.

        Requests that never started wait in arrival order (evicted ones are
        put back at the front), so the scan stops at the first one that has
        not yet waited too long.
        """
        now, hopeless = state.now_s, []
        for request in state.waiting:
            why = self._broken_sla(request, now)
            if why:
                hopeless.append((request, why))
            elif request.first_token_s is None:
                break
        for request, why in hopeless:
            builder.reject(request, why)

    def _broken_sla(self, request: RequestView, now: float) -> str | None:
        if request.first_token_s is None:
            waited = now - request.arrival_s
            if self.abort_ttft_s is not None and waited > self.abort_ttft_s:
                return f"SLA abort: {waited:.3g} s without a first token (TTFT SLA {self.abort_ttft_s:g} s)"
            return None
        gap = now - request.last_token_s
        if self.abort_max_tpot_s is not None and gap > self.abort_max_tpot_s:
            return (f"SLA abort: evicted, {gap:.3g} s since its last token "
                    f"(max-TPOT SLA {self.abort_max_tpot_s:g} s)")
        return None
