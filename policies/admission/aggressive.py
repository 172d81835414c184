"""vLLM's default admission: admit whatever fits now, above the watermark."""

from __future__ import annotations

from typing import ClassVar

from policies.admission.sla_abort import SlaAdmission
from simulator.policy_api import ADMISSION_POLICIES


@ADMISSION_POLICIES.register("aggressive")
class AggressiveAdmission(SlaAdmission):
    """Admits a waiting request whenever its blocks fit above the watermark.

    The fit itself is enforced by the step builder, so this policy adds no
    condition: output growth is not reserved, and running out of KV later
    is handled by preemption (the Past-Future paper's "aggressive" scheduler,
    with vLLM's 1% watermark as ``cluster.watermark_fraction``).

    A refusal is decode-invariant - free memory only shrinks while the batch
    decodes - unless SLA aborts are on (time alone then changes the queue),
    so the engine may fast-forward decode stretches while requests wait.
    """

    reads_running: ClassVar[bool] = False  # the step builder checks the fit; nothing here looks at the batch

    @property
    def decode_invariant(self) -> bool:
        return not self._sla_aborts_on
