"""The least-loaded instance, found in one pass: the read that join-the-shortest-queue routing
makes of every instance on every arrival.

Routers see instances through ``InstanceView`` and read their counters as properties. A router
that compares every instance on each arrival reads 64 counters per request on a 64-instance
cluster; as property reads and list scans in the policy that was about 4% of a million-request
run. Here, compiled, the engine's own instances are read through their declared types (see
``load_scan.pxd``); any other ``InstanceView`` is read through its properties, to the same result.
"""

from __future__ import annotations

from typing import Sequence

from simulator.engine.instance import Instance

SCANNED_LOADS = ("requests", "tokens")


def least_loaded(instances: Sequence, load: str) -> int | None:
    """The id of the instance with the least ``load`` (``"requests"`` it holds, or ``"tokens"``
    it still has to compute), the lowest id among equals; None when ``instances`` is empty.
    Loads and ids are integers (compiled, they are compared as machine integers)."""
    if load not in SCANNED_LOADS:
        raise ValueError(f"load must be one of {SCANNED_LOADS}, got {load!r}")
    tokens = load == "tokens"
    found = False
    least = chosen = 0
    for view in instances:
        if type(view) is Instance:
            instance = view
            queues = instance.queues
            value = queues.pending_tokens if tokens else queues.num_requests
            ident = instance.id
        else:
            value = view.pending_tokens if tokens else view.num_requests
            ident = view.id
        if not found or value < least or (value == least and ident < chosen):
            least, chosen, found = value, ident, True
    return chosen if found else None
