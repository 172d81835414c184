"""Orca's and early TGI's admission: reserve every request's prompt plus its maximum output."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PrivateAttr

from policies.admission.sla_abort import SlaAdmission
from simulator.policy_api import ADMISSION_POLICIES, RequestView, SchedulerView, StepBuilder


@ADMISSION_POLICIES.register("conservative")
class ConservativeAdmission(SlaAdmission):
    """Admits a request only if every request's worst case fits: sum of (prompt + cap) <= capacity.

    Each request, running, swapped or admitted earlier in this step, reserves
    its prompt plus its output cap (``max_output_tokens``), rounded up to whole
    KV blocks; a candidate joins only if the reservations, its own included,
    fit in ``(1 - reserve)`` of the instance's KV tokens. Memory can then never
    run out, so this policy never causes an eviction - at the price of memory
    held idle for outputs that end early.

    ``decode_invariant`` is False (as for every policy here that is not
    aggressive): SLA aborts depend on time, so the engine must not skip steps
    while requests wait.

    Attributes:
        reserve: fraction of KV capacity kept out of the reservations.
    """

    reserve: float = Field(default=0.0, ge=0, lt=1)
    decode_invariant: ClassVar[bool] = False
    _builder: StepBuilder | None = PrivateAttr(None)
    _reserved: int = PrivateAttr(0)

    def fits(self, request: RequestView, state: SchedulerView, builder: StepBuilder) -> bool:
        if builder is not self._builder:  # a new step: reservations of the batch as it stands
            self._builder = builder
            batch = (*state.running, *state.swapped)
            self._reserved = sum(self._reservation(r, state.block_size) for r in batch)
        need = self._reserved + self._reservation(request, state.block_size)
        if need > (1 - self.reserve) * state.kv_total_blocks * state.block_size:
            return False
        self._reserved = need
        return True

    def _reservation(self, request: RequestView, block_size: int) -> int:
        tokens = request.prompt_tokens + max(self.cap(request), request.generated_tokens)
        return -(-tokens // block_size) * block_size
