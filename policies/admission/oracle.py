"""The paper's "theoretical optimum": Past-Future's peak-based admission with the true output lengths."""

from __future__ import annotations

from typing import Literal

from policies.admission.past_future import PastFutureAdmission
from simulator.policy_api import ADMISSION_POLICIES


@ADMISSION_POLICIES.register("oracle")
class OracleAdmission(PastFutureAdmission):
    """Admits a request iff the future peak, computed with every request's true remaining length, fits.

    The upper bound on what any length estimate can achieve: it reads
    ``output_tokens``, which only oracle policies may. With whole-prompt
    prefill (no chunking) it never causes an eviction. Parameters as
    ``past_future``; the history ones are unused.
    """

    lengths: Literal["history", "oracle"] = "oracle"
