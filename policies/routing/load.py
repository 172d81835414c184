"""Load metrics routers compare instances by."""

from __future__ import annotations

from typing import Literal

from simulator.policy_api import InstanceView

LoadMetric = Literal["requests", "tokens", "kv"]


def instance_load(instance: InstanceView, metric: LoadMetric) -> float:
    """The load of ``instance``: requests it holds, tokens it still has to compute, or KV in use.

    ``kv`` counts used blocks plus the queued requests' pending tokens in
    blocks, so an instance with a long queue is not mistaken for a free one.
    """
    if metric == "requests":
        return instance.num_requests
    if metric == "tokens":
        return instance.pending_tokens
    return (instance.kv_used_blocks + instance.pending_tokens / instance.block_size) / instance.kv_total_blocks
