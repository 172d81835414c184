"""Session affinity by hash: the baseline router of the SAGA reproduction.

Every call of a session goes to the instance its session id hashes to (a
stable CRC-32, so runs do not depend on Python's per-process hash seed); a
request without a session goes to the instance with the fewest pending
tokens. With vLLM's prefix caching this keeps a workflow's context on the
instance that computed it, as long as the LRU cache still holds it.
"""

from __future__ import annotations

import zlib
from typing import Sequence

from simulator.policy_api import ROUTERS, InstanceView, Policy, RequestView


@ROUTERS.register("session_affinity")
class SessionAffinity(Policy):
    """Hash a request's session id onto the instances offered; least pending tokens without a session."""

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int | None:
        if not instances:
            return None
        session = request.session_id
        if session is None:
            return min(instances, key=lambda i: (i.pending_tokens, i.id)).id
        ordered = sorted(instances, key=lambda i: i.id)
        return ordered[zlib.crc32(session.encode()) % len(ordered)].id
