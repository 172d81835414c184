"""Llumnix's load metric: virtual usage and freeness (Sun et al., OSDI 2024, section 4.4).

Every goal of Llumnix's scheduler is expressed as *virtual usage* of an
instance's KV memory, so that one rule - balance freeness - pursues them all:

* a running request's virtual usage is its physical usage (its blocks);
* queued requests count with their demand (the blocks their prompt needs),
  so an instance whose queue cannot start looks loaded (de-fragmentation:
  migration then makes room for the queue's head);
* a high-priority request adds a *headroom* - blocks held back on its
  instance (split among the instance's requests of that priority) so that
  the instance keeps a small, fast batch;
* an instance being drained by auto-scaling carries a fake request of
  infinite usage, so everything migrates off it.

Freeness is ``(M - sum of virtual usage) / B``: the free blocks per running
request, i.e. roughly how many blocks each request of the batch may still
grow by - ``M`` the instance's KV blocks, ``B`` its batch size (at least 1).
Dispatch counts every queued request's demand (Llumnix's dispatch load);
migration counts only the head of the queue, the request whose admission
the migration would unblock.

For speed the queued demand of dispatch is derived from the instance's
pending tokens (tokens still to compute, one per running decode), not a walk
over the queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.policy_api import InstanceView


@dataclass(frozen=True)
class LoadSnapshot:
    """What an instance reports of its load: enough to compute its freeness later, as of the report."""

    id: int
    block_size: int
    kv_total_blocks: int
    kv_used_blocks: int
    pending_tokens: int
    num_running: int
    priorities: frozenset[int]

    @classmethod
    def of(cls, instance: InstanceView) -> LoadSnapshot:
        present = {request.priority for request in instance.running}
        present.update(request.priority for request in instance.waiting)
        return cls(instance.id, instance.block_size, instance.kv_total_blocks, instance.kv_used_blocks,
                   instance.pending_tokens, instance.num_running, frozenset(present))


def _blocks(tokens: int, block_size: int) -> int:
    return -(-max(tokens, 0) // block_size)


def queued_demand_blocks(instance: InstanceView | LoadSnapshot, whole_queue: bool) -> int:
    """Blocks the waiting requests need to start: all of them, or only the head of the queue."""
    if not whole_queue:
        if isinstance(instance, LoadSnapshot):
            raise ValueError("a load snapshot carries the whole queue's demand only")
        waiting = instance.waiting
        return _blocks(waiting[0].known_tokens, instance.block_size) if waiting else 0
    # Pending tokens: the queue's prompts plus one per running request (plus prefill chunks left).
    return _blocks(instance.pending_tokens - instance.num_running, instance.block_size)


def headroom_blocks(instance: InstanceView | LoadSnapshot, headroom: dict[int, int], arriving: int | None = None) -> int:
    """Blocks held back for the priorities present on the instance (each priority's headroom once).

    ``arriving``: the priority of a request being dispatched, counted as present
    (its instance would hold its headroom), so high-priority requests gather on
    the instances that already reserve for them.
    """
    if not headroom:
        return 0
    if isinstance(instance, LoadSnapshot):
        present = set(instance.priorities)
    else:
        present = {request.priority for request in instance.running}
        present.update(request.priority for request in instance.waiting)
    if arriving is not None:
        present.add(arriving)
    return sum(blocks for priority, blocks in headroom.items() if priority in present)


def freeness(instance: InstanceView | LoadSnapshot, *, whole_queue: bool, headroom: dict[int, int] | None = None,
             draining: bool = False, arriving: int | None = None) -> float:
    """Free blocks per running request after virtual usage; ``-inf`` for an instance being drained."""
    if draining:
        return -math.inf
    usage = instance.kv_used_blocks + queued_demand_blocks(instance, whole_queue)
    usage += headroom_blocks(instance, headroom or {}, arriving)
    return (instance.kv_total_blocks - usage) / max(instance.num_running, 1)
