"""vLLM's default admission: admit whatever fits now, above the watermark."""

from __future__ import annotations

from typing import ClassVar

from simulator.policy_api import ADMISSION_POLICIES, Policy, RequestView, SchedulerView, StepBuilder


@ADMISSION_POLICIES.register("aggressive")
class AggressiveAdmission(Policy):
    """Admits a waiting request whenever its blocks fit above the watermark.

    The fit itself is enforced by the step builder, so this policy adds no
    condition: output growth is not reserved, and running out of KV later
    is handled by preemption.
    """

    def admit(self, request: RequestView, state: SchedulerView, builder: StepBuilder) -> bool:
        return True

    def on_finish(self, request: RequestView, now_s: float) -> None:
        """Aggressive admission keeps no history."""
